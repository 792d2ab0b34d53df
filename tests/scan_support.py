"""Shared by the scan tests: tiny plans over the conftest models, a broken card, and a local HTTP server for webhooks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

FAST_TABULAR_SPEC = {"samples": 1, "probes": [{"name": "calibration"}, {"name": "group_metrics", "params": {"n_boot": 20}}]}
PASSING = {"name": "lenient", "checks": [{"id": "accuracy", "check": "min_accuracy", "threshold": 0.0}]}
FAILING = {"name": "strict", "checks": [{"id": "accuracy", "check": "min_accuracy", "threshold": 0.999}]}


def write_plan(folder: Path, raw: dict, name: str = "plan.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def broken_card(bundle: dict, folder: Path, name: str = "broken-mlp") -> Path:
    """A valid card whose weights file is garbage: the plan validates, the audit crashes when it loads the model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.safetensors").write_bytes(b"\x00not a safetensors file" * 8)
    (folder / "eval.csv").write_bytes((bundle["dir"] / "eval.csv").read_bytes())
    card = {**bundle["card"], "name": name}
    path = folder / "card.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


@dataclass
class Hook:
    """What the local webhook server received, and how it answers: status code and delay."""

    status: int = 200
    delay_s: float = 0.0
    received: list[dict] = field(default_factory=list)
    url: str = ""


@contextmanager
def webhook_server(hook: Hook) -> Iterator[Hook]:
    """A real HTTP server on 127.0.0.1 that records each POSTed JSON body."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.received.append(
                {
                    "body": json.loads(body),
                    "content_type": self.headers.get("Content-Type"),
                    "authorization": self.headers.get("Authorization"),
                    "at": time.monotonic(),
                }
            )
            if hook.delay_s:
                time.sleep(hook.delay_s)
            try:
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"{}")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
