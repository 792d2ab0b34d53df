"""Webhook alerts: a JSON POST on a failing verdict or a regression, with a timeout and bounded retries.

Delivery never raises: each webhook's outcome is returned (and recorded in the store by the
runner), so a dead or hanging endpoint costs at most ``(retries + 1) * timeout_s`` plus
the backoff, and never loses the run, which is recorded before any alert is sent.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from audits import __version__
from audits.scan.outcome import AlertDelivery
from audits.scan.plan import Webhook

# Pause before retry n (seconds): short, because a scan waits for its alerts.
BACKOFF_S = (0.5, 1.0, 2.0, 2.0, 2.0)


def alert_payload(
    *, plan: str, model: str, run_id: str, verdict: str, regressions: list[dict], link: str, failing: list[dict], error: str | None = None
) -> dict:
    """The JSON body of an alert (schema documented in docs/scans.md)."""
    return {
        "event": "audits.scan.alert",
        "plan": plan,
        "model": model,
        "run_id": run_id,
        "verdict": verdict,
        "regressions": regressions,
        "failing_findings": failing,
        "error": error,
        "link": link,
        "tool_version": __version__,
    }


def should_alert(verdict: str, regressions: list[dict], *, on_warn: bool) -> bool:
    """Alert on a failing or crashed verdict, a warning when asked, or any regression."""
    return verdict in ("fail", "crashed") or (on_warn and verdict == "warn") or bool(regressions)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: str) -> str:
    """``${NAME}`` in a header value is read from the environment at send time, so tokens stay out of plan files."""

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise LookupError(f"environment variable {name} (named in a webhook header) is not set")
        return os.environ[name]

    return _ENV_REF.sub(lookup, value)


def _post_once(hook: Webhook, body: bytes) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": f"audits/{__version__}", **{k: _expand(v) for k, v in hook.headers.items()}}
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:  # noqa: S310 (the URL is http(s), checked by the plan)
        response.read(65536)
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(hook.url, response.status, "not a 2xx answer", response.headers, None)


def deliver(hook: Webhook, payload: dict) -> AlertDelivery:
    """POST ``payload`` to one webhook; retried on any error or non-2xx answer, ``hook.retries`` times at most."""
    body = json.dumps(payload, sort_keys=True).encode()
    error = ""
    try:
        {k: _expand(v) for k, v in hook.headers.items()}
    except LookupError as exc:  # a configuration error: retrying cannot help
        return AlertDelivery(target=hook.url, ok=False, attempts=0, error=str(exc))
    for attempt in range(1, hook.retries + 2):
        try:
            _post_once(hook, body)
            return AlertDelivery(target=hook.url, ok=True, attempts=attempt)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
        if attempt <= hook.retries:
            time.sleep(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)])
    return AlertDelivery(target=hook.url, ok=False, attempts=hook.retries + 1, error=error)


def deliver_all(hooks: Sequence[Webhook], payload: dict) -> list[AlertDelivery]:
    """Deliver to every webhook (one after another; each bounded by its own timeout and retries)."""
    return [deliver(hook, payload) for hook in hooks]
