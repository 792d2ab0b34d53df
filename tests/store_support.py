"""Shared by the store tests: a throwaway PostgreSQL server, fresh store URLs per backend, and tiny recorded reports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _pg_bin() -> Path:
    """The newest Debian PostgreSQL's binaries (``$AUDITS_TEST_PG_BIN`` overrides)."""
    if os.environ.get("AUDITS_TEST_PG_BIN"):
        return Path(os.environ["AUDITS_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


@dataclass
class PostgresServer:
    """A PostgreSQL server in a temporary folder, on a free port of 127.0.0.1."""

    folder: Path
    port: int
    as_postgres: bool

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"store_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_postgres() -> tuple[PostgresServer | None, str]:
    """Start a server (initdb + pg_ctl); returns it, or None and why it could not start."""
    if not (PG_BIN / "initdb").is_file():
        return None, f"PostgreSQL is not installed ({PG_BIN / 'initdb'} missing; apt-get install postgresql)"
    as_postgres = os.geteuid() == 0  # the server refuses to run as root
    folder = Path(tempfile.mkdtemp(prefix="audits-pg-", dir="/tmp"))
    server = PostgresServer(folder=folder, port=_free_port(), as_postgres=as_postgres)
    try:
        if as_postgres:
            shutil.chown(folder, "postgres", "postgres")
        server._run([str(PG_BIN / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres", "--no-sync"])
        options = f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        server._run([str(PG_BIN / "pg_ctl"), "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start"])
    except (subprocess.SubprocessError, OSError, LookupError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        server.stop()
        return None, f"no PostgreSQL server could start here: {detail.strip()[:300]}"
    return server, ""


def postgres_session() -> Iterator[PostgresServer | tuple[None, str]]:
    server, why = start_postgres()
    try:
        yield server if server is not None else (None, why)
    finally:
        if server is not None:
            server.stop()


SMALL_SPEC = {"samples": 2, "seed": 0, "probes": [{"name": "saliency"}, {"name": "group_metrics", "params": {"n_boot": 20}}]}


def small_audit(card_path: Path, seed: int = 0):
    """A quick audit of a tiny model's card (saliency and group metrics) with the default policy's findings."""
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.policy import apply_policy
    from audits.spec import parse_spec
    from models.card import load_card
    from models.loader import load_model

    card = load_card(card_path)
    return apply_policy(run_audit(load_model(card), load_data(card), parse_spec({**SMALL_SPEC, "seed": seed})))
