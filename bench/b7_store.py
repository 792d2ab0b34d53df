"""B7: the store at scale: ``audits verify`` over 10,000 run records, ``audits history`` and the History page over
1,000 runs x 50 measurements, and the cost of appending a run.

The stores are filled through the store's own append path (``prepare_run`` on a real
audit report of adult-mlp, then ``record_prepared`` in batches of 500), so every record is
hash-chained exactly as ``audits run --store`` chains it. For the history store each run
carries 50 measurements with intervals (values drawn from a seeded generator: the
benchmark times reading and drawing them, not what they mean). ``audits verify`` and
``audits history`` are timed as the user runs them: a fresh ``python -m audits`` process,
interpreter start and imports included. The History page is timed headless with
Streamlit's AppTest (its second run: the sidebar's model is cached, the store is read again).
"""

from __future__ import annotations

import copy
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.harness import CaseResult, Check, Config, measure

CASE = "B7"
TITLE = "Store: audits verify over 10,000 records, audits history and the History page over 1,000 runs x 50 measurements"
REPO = Path(__file__).resolve().parent.parent
BATCH = 500


def _template(config: Config):
    from audits.engine import run_audit
    from audits.policy import apply_policy
    from audits.spec import parse_spec
    from audits.store.prepare import prepare_run
    from bench.harness import zoo

    model, data = zoo("adult-mlp")
    report = apply_policy(
        run_audit(
            model, data, parse_spec({"seed": config.seed, "samples": 2, "max_rows": 1000, "probes": [{"name": "group_metrics", "params": {"n_boot": 20}}]})
        )
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return report, prepare_run(report, model_name=report.provenance.model_name, plan="bench", started_at=t0, ended_at=t0 + timedelta(seconds=5), user="bench")


def _runs(template, n: int, *, measurements: int | None, seed: int, prefix: str):
    from audits.store.prepare import iso_utc

    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        run = copy.copy(template)
        start = t0 + timedelta(hours=i)
        run.row = {**template.row, "run_id": f"{prefix}{i:08d}", "started_at": iso_utc(start), "ended_at": iso_utc(start + timedelta(seconds=5))}
        if measurements is not None:
            values = rng.uniform(0.6, 0.95, measurements)
            run.measurements = [
                {"position": k, "name": f"metric_{k:02d}", "subject": "", "value": float(v), "interval_lo": float(v - 0.02), "interval_hi": float(v + 0.02),
                 "direction": "higher_is_better", "evidence": f"bench[{k}]", "n": 1000}
                for k, v in enumerate(values)
            ]  # fmt: skip
        yield run


def _fill(store, runs) -> float:
    """Append every run in batches; returns the seconds spent appending."""
    spent, batch = 0.0, []
    for run in runs:
        batch.append(run)
        if len(batch) == BATCH:
            started = time.perf_counter()
            store.record_prepared(batch)
            spent += time.perf_counter() - started
            batch = []
    if batch:
        started = time.perf_counter()
        store.record_prepared(batch)
        spent += time.perf_counter() - started
    return spent


def _cli(*args: str) -> tuple[str, float]:
    """The command's output and the CPU seconds its process used (user + system): a figure the machine's load does not inflate."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "audits", *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"audits {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[:400]}")
    return proc.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cpu(fn):
    """``fn()``'s output and the CPU seconds this process spent in it."""
    started = time.process_time()
    out = fn()
    return out, time.process_time() - started


def _page_seconds(root: Path) -> tuple[float, float, float] | None:
    """The History page over the store in ``root``, headless: seconds of its first draw (the chain verified),
    CPU seconds of that draw, and seconds of a redraw (None without the zoo or Streamlit)."""
    import os

    try:
        from streamlit.testing.v1 import AppTest
    except ImportError:
        return None
    from models.registry import zoo_names

    if not zoo_names():
        return None
    saved = {k: os.environ.get(k) for k in ("AUDITS_STORE", "AUDITS_STORE_URL")}
    os.environ["AUDITS_STORE"] = str(root)
    os.environ.pop("AUDITS_STORE_URL", None)
    try:
        at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=300).run()  # the sidebar loads its model once
        wall, cpu = time.perf_counter(), time.process_time()
        at.switch_page("app_pages/history_page.py").run()
        first, first_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall = time.perf_counter()
        at.run()
        again = time.perf_counter() - wall
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    problems = [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]
    if problems:
        raise RuntimeError(f"the History page failed: {problems[0][:300]}")
    return first, first_cpu, again


def run(config: Config) -> CaseResult:
    from audits.store import open_store

    n_verify = 200 if config.quick else 10_000
    n_history = 50 if config.quick else 1_000
    n_measurements = 50
    report, template = _template(config)
    folder = Path(tempfile.mkdtemp(prefix="audits-bench-store-"))
    verify_store = open_store(str(folder / "verify"))
    append_s = _fill(verify_store, _runs(template, n_verify, measurements=None, seed=config.seed, prefix="v"))
    history_store = open_store(str(folder / "history"))
    _fill(history_store, _runs(template, n_history, measurements=n_measurements, seed=config.seed, prefix="h"))
    model = report.provenance.model_name

    verify = measure(CASE, "ours", lambda n: _cli("verify", "--store", str(folder / "verify")), units=n_verify, unit="records", meters=[], config=config,
                     group="audits verify", note="fresh process: start, imports, the whole chain")  # fmt: skip
    in_process = measure(CASE, "ours", lambda n: _cpu(verify_store.verify), units=n_verify, unit="records", meters=[], config=config,
                         group="Store.verify() in process", note="the walk alone")  # fmt: skip
    history = measure(CASE, "ours", lambda n: _cli("history", "--model", model, "--store", str(folder / "history"), "--measure", "metric_00", "--measure", "metric_01"),
                      units=n_history, unit="runs", meters=[], config=config, group="audits history", note=f"{n_measurements} measurements per run")  # fmt: skip
    rows = [verify.row, in_process.row, history.row]
    for m in (verify, in_process, history):
        m.row.quality = {"cpu_s": m.output[1]}
    verify_text, history_text = verify.output[0], history.output[0]
    ok_text = f"{n_verify} record(s), chain intact"
    checks = [
        Check(CASE, f"audits verify over {n_verify:,} records finds the chain intact", 1.0 if ok_text in verify_text else 0.0, ok_text in verify_text),
        Check(CASE, f"audits verify over {n_verify:,} records < 5 s", verify.row.wall_time_s, verify.row.wall_time_s < 5.0),
        Check(CASE, f"audits history over {n_history:,} runs x {n_measurements} measurements < 2 s", history.row.wall_time_s, history.row.wall_time_s < 2.0),
        Check(CASE, f"audits history lists all {n_history:,} runs", float(history_text.count("\n") - 2), f"{n_history} run(s) of {model}" in history_text),
    ]
    notes = [
        f"appending {n_verify:,} runs took {append_s:.1f} s in batches of {BATCH} ({1000 * append_s / n_verify:.2f} ms per run; one run per transaction as audits run records it also pays one fsync).",
        "SQLite in WAL mode with synchronous=FULL, on the machine's temporary folder.",
        f"each record's report JSON is {len(template.report_json) / 1024:.0f} KiB, with {len(template.findings)} findings; verify reads and hashes all of it.",
        "quality cpu_s: CPU seconds (user + system) of the command's process: wall time on a loaded machine runs well above it.",
    ]
    page = _page_seconds(folder / "history")
    if page is not None:
        from bench.harness import Row

        first, first_cpu, again = page
        rows.append(Row(CASE, "ours", first, 0, 0, 0.0, quality={"cpu_s": first_cpu}, group="History page (AppTest)", measured_units=n_history, total_units=n_history,
                        unit="runs", measured_time_s=first, note="first draw: chain verified, timeline, table, two trends, diff of two runs"))  # fmt: skip
        rows.append(Row(CASE, "ours", again, 0, 0, 0.0, group="History page redraw (AppTest)", measured_units=n_history, total_units=n_history, unit="runs",
                        measured_time_s=again, note="a widget change: the verification is reused while the store has not grown (60 s)"))  # fmt: skip
        checks.append(Check(CASE, f"History page over {n_history:,} runs x {n_measurements} measurements drawn < 2 s", first, first < 2.0))
    else:
        notes.append("History page not timed: the demo zoo or Streamlit is missing.")
    verify_store.close()
    history_store.close()
    shutil.rmtree(folder, ignore_errors=True)
    return CaseResult(CASE, TITLE, rows, checks, notes)
