"""Webhook alerts against a real HTTP server on 127.0.0.1: the payload, regressions, and failing or hanging endpoints that cost at most their timeout."""

from __future__ import annotations

import time

from audits.scan.alerts import deliver
from audits.scan.plan import Webhook, load_plan
from audits.scan.runner import run_plan
from audits.store import open_store
from tests.scan_support import FAILING, FAST_TABULAR_SPEC, PASSING, Hook, webhook_server, write_plan


def _plan(folder, bundle, hook_url: str, policy: dict, **hook) -> object:
    raw = {
        "name": "alerting",
        "spec": FAST_TABULAR_SPEC,
        "policy": policy,
        "models": [{"card": str(bundle["card_path"])}],
        "notify": {"webhooks": [{"url": hook_url, **hook}], "run_url": "https://audits.example.org/history?model={model}&run={run_id}"},
    }
    return load_plan(write_plan(folder, raw))


def test_a_failing_verdict_and_a_regression_post_the_documented_payload(tmp_path, tabular_bundle):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with webhook_server(Hook()) as hook:
        first = run_plan(_plan(tmp_path, tabular_bundle, hook.url, PASSING), store=store)
        assert first.models[0].verdict == "pass" and hook.received == []  # passing, nothing regressed: no alert
        second = run_plan(_plan(tmp_path, tabular_bundle, hook.url, FAILING), store=store)
    scan = second.models[0]
    assert scan.verdict == "fail"
    assert len(hook.received) == 1 and hook.received[0]["content_type"] == "application/json"
    body = hook.received[0]["body"]
    assert {k: body[k] for k in ("event", "plan", "model", "run_id", "verdict", "link")} == {
        "event": "audits.scan.alert",
        "plan": "alerting",
        "model": "tiny-mlp",
        "run_id": scan.run_id,
        "verdict": "fail",
        "link": f"https://audits.example.org/history?model=tiny-mlp&run={scan.run_id}",
    }
    # The accuracy check went from pass to fail against the previous run of the plan.
    assert [(r["key"], r["kind"], r["old_status"], r["new_status"], r["previous_run_id"]) for r in body["regressions"]] == [
        ("accuracy", "new failure", "pass", "fail", first.models[0].run_id)
    ]
    assert [f["key"] for f in body["failing_findings"]] == ["accuracy"]
    assert [(a["target"], a["ok"]) for a in store.alerts(scan.run_id)] == [(hook.url, True)]


def test_a_failing_endpoint_is_retried_a_bounded_number_of_times_and_recorded(tmp_path, tabular_bundle):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with webhook_server(Hook(status=500)) as hook:
        result = run_plan(_plan(tmp_path, tabular_bundle, hook.url, FAILING, retries=2, timeout_s=2), store=store)
    scan = result.models[0]
    assert len(hook.received) == 3  # one attempt and two retries
    assert [(a.ok, a.attempts, a.error) for a in scan.alerts] == [(False, 3, "HTTP 500 Internal Server Error")]
    assert store.get_run(scan.run_id).verdict == "fail"  # the run is kept
    assert [(a["ok"], a["error"]) for a in store.alerts(scan.run_id)] == [(False, "HTTP 500 Internal Server Error")]


def test_a_hanging_endpoint_delays_nothing_beyond_its_timeout(tmp_path, tabular_bundle):
    with webhook_server(Hook(delay_s=5)) as hook:
        started = time.monotonic()
        delivery = deliver(Webhook(url=hook.url, timeout_s=0.5, retries=1), {"ping": 1})
        elapsed = time.monotonic() - started
    # two attempts of 0.5 s and one 0.5 s backoff; generous slack for a loaded machine, far below the 5 s hang
    assert not delivery.ok and delivery.attempts == 2 and "timed out" in delivery.error.lower()
    assert 1.0 <= elapsed < 3.0
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with webhook_server(Hook(delay_s=5)) as hook:
        started = time.monotonic()
        result = run_plan(_plan(tmp_path, tabular_bundle, hook.url, FAILING, retries=0, timeout_s=0.5), store=store)
        audit = result.models[0].outcome.audit_seconds
        elapsed = time.monotonic() - started
    assert elapsed - audit < 0.5 + 2.5  # the hang cost its timeout, plus store writes
    assert store.get_run(result.models[0].run_id).status == "completed"
    assert [a["ok"] for a in store.alerts(result.models[0].run_id)] == [False]


def test_an_unreachable_endpoint_fails_fast_and_keeps_the_run(tmp_path):
    delivery = deliver(Webhook(url="http://127.0.0.1:9/hook", timeout_s=1, retries=1), {"ping": 1})
    assert not delivery.ok and delivery.attempts == 2 and "refused" in delivery.error.lower()


def test_header_values_name_environment_variables_read_when_sent(monkeypatch):
    hook = Webhook(url="http://127.0.0.1:9/hook", headers={"Authorization": "Bearer ${AUDITS_TEST_TOKEN}"})
    monkeypatch.delenv("AUDITS_TEST_TOKEN", raising=False)
    missing = deliver(hook, {"ping": 1})
    assert (missing.ok, missing.attempts, missing.error) == (False, 0, "environment variable AUDITS_TEST_TOKEN (named in a webhook header) is not set")
    monkeypatch.setenv("AUDITS_TEST_TOKEN", "s3cret")
    with webhook_server(Hook()) as server:
        delivered = deliver(hook.model_copy(update={"url": server.url}), {"ping": 1})
    assert delivered.ok and server.received[0]["authorization"] == "Bearer s3cret"
