"""Where the store is (a URL) and how to connect: SQLite settings, PostgreSQL timeouts, errors that name the fix.

SQLite (the default, one file ``audits.db`` in the store folder):

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers;
- ``synchronous=FULL``: every commit is on disk before it returns (``NORMAL`` in WAL mode may
  lose the last commits on power loss, and a run record must never be lost);
- ``busy_timeout``: a second writer waits up to ``AUDITS_STORE_BUSY_S`` seconds (default 30)
  for the first, then fails with :class:`StoreError` (nothing written);
- writes start with ``BEGIN IMMEDIATE`` so a writer takes the lock before it reads the chain
  head: two writers are serialised, never interleaved.

PostgreSQL: ``postgresql+psycopg://user:password@host:port/db``; connections time out after
``AUDITS_STORE_CONNECT_S`` seconds (default 5) and appends lock the chain head row.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from audits.store.records import StoreError
from audits.uploads import DEFAULT_ROOT, STORE_ENV

STORE_URL_ENV = "AUDITS_STORE_URL"
BUSY_ENV = "AUDITS_STORE_BUSY_S"
CONNECT_ENV = "AUDITS_STORE_CONNECT_S"
DB_FILE = "audits.db"
URL_FIX = "Pass --store with a SQLAlchemy URL (sqlite:///path/audits.db or postgresql+psycopg://user:password@host:5432/db) or a store folder, or set AUDITS_STORE_URL."


def resolve_url(url: str | None = None) -> str:
    """The store's SQLAlchemy URL: ``url``, else ``$AUDITS_STORE_URL``, else ``audits.db`` in the store folder.

    A value without ``://`` is a folder (the SQLite file goes inside it) or, ending in
    ``.db``/``.sqlite``, the SQLite file itself.
    """
    url = url or os.environ.get(STORE_URL_ENV) or ""
    if "://" in url:
        return url
    folder = Path(url or os.environ.get(STORE_ENV) or DEFAULT_ROOT)
    path = folder if folder.suffix in (".db", ".sqlite", ".sqlite3") else folder / DB_FILE
    return f"sqlite:///{path.resolve()}"


def describe(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise StoreError(f"{name}={os.environ[name]!r} is not a number of seconds.", fix=f"Set {name} to a number, e.g. 30.") from None


def create_store_engine(url: str, *, busy_timeout_s: float | None = None) -> Engine:
    """An engine for ``url`` with the store's connection settings (see the module docstring)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"The store URL {url!r} is not a database URL.", fix=URL_FIX) from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, parsed.database, busy_timeout(busy_timeout_s))
        if backend == "postgresql":
            if parsed.get_driver_name() != "psycopg":
                raise StoreError(
                    f"The store URL {describe(url)} uses the {parsed.get_driver_name()} driver.",
                    fix="Write it as postgresql+psycopg://user:password@host:5432/db.",
                )
            return create_engine(url, connect_args={"connect_timeout": max(1, round(_float_env(CONNECT_ENV, 5.0)))}, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"The driver for {describe(url)} is not installed ({exc}).",
            fix="Install the project's dependencies (pip install -e .), which include psycopg[binary].",
        ) from None
    raise StoreError(f"The store URL {describe(url)} names {backend!r}; the store runs on SQLite or PostgreSQL.", fix=URL_FIX)


def _sqlite_engine(url: str, database: str | None, busy_s: float) -> Engine:
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the store folder {folder}: {exc.strerror}.", fix="Choose a writable folder with --store or AUDITS_STORE_URL."
            ) from None
    engine = create_engine(url, connect_args={"timeout": busy_s})

    @event.listens_for(engine, "connect")
    def _settings(dbapi_connection, _record) -> None:
        # Leave transactions to SQLAlchemy's begin event below (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.get_execution_options().get("store_write") else "BEGIN")

    return engine


def busy_timeout(seconds: float | None = None) -> float:
    """How long a writer waits for another: ``seconds``, else ``$AUDITS_STORE_BUSY_S``, else 30."""
    return seconds if seconds is not None else _float_env(BUSY_ENV, 30.0)


def store_error(exc: DBAPIError, url: str, doing: str, busy_s: float | None = None) -> StoreError:
    """One message naming the problem and the fix for a database error while ``doing``."""
    text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    where = describe(url)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"The store {where} is locked by another writer and stayed locked while {doing} (waited {busy_timeout(busy_s):g} s); nothing was written.",
            fix=f"Wait for the other audit or scan to finish and retry, or raise {BUSY_ENV}; for many concurrent writers use PostgreSQL.",
        )
    if url.startswith("postgresql"):
        return StoreError(
            f"Cannot reach the store {where} while {doing}: {text}.", fix=f"Start the PostgreSQL server or correct the URL (--store or {STORE_URL_ENV})."
        )
    return StoreError(
        f"The store {where} failed while {doing}: {text}.", fix=f"Check that the file is a writable audits store, or point --store / {STORE_URL_ENV} elsewhere."
    )
