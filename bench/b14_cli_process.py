"""B14: ``audits run --model digits-cnn`` as a whole process against the audit's own time.

The command a user types runs in a fresh interpreter (``python -m audits run ... --quiet``, the
bench's torch threads passed as ``--threads``), timed from outside as wall time. The audit's own
time is the engine's recorded duration (``provenance.wall_time_s`` in the report it wrote);
everything else (interpreter start, imports, loading the card, model and data, the policy, JSON,
HTML, PDF and the attribution figures) is the overhead the issue bounds at 2 s. Two breakdown
rows, each its own fresh process: the imports alone (what ``audits run`` imports before the
audit starts, the probe registry included) and a re-render of the written report to HTML and PDF
(``audits report``: no torch, the same figures). Quick mode audits 64 rows with one probe.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import CaseResult, Check, Config, Row

CASE = "B14"
TITLE = "CLI whole process: audits run --model digits-cnn (wall) vs the audit's own recorded time"
REPO = Path(__file__).resolve().parent.parent
QUICK_SPEC = "seed: 0\nsamples: 1\nmax_rows: 64\nprobes:\n  - name: grad_cam\n"
IMPORTS = (
    "import audits.cli, audits.engine, audits.data, audits.policy, audits.spec, audits.render.export, models.loader, models.registry\n"
    "from audits.probes import registered_probes\nregistered_probes()"
)


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def run(config: Config) -> CaseResult:
    threads = str(torch.get_num_threads())
    repeats = 1 if config.quick else max(config.repeats, 3)
    runs = []  # (wall, audit's own time, model calls, rows)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as folder:
        tmp = Path(folder)
        argv = [
            sys.executable,
            "-m",
            "audits",
            "run",
            "--model",
            "digits-cnn",
            "--threads",
            threads,
            "--quiet",
            "--fail-on",
            "never",
            "--seed",
            str(config.seed),
        ]
        if config.quick:
            (tmp / "spec.yaml").write_text(QUICK_SPEC)
            argv += ["--spec", str(tmp / "spec.yaml")]
        for i in range(repeats):
            out = tmp / f"out{i}"
            wall = _timed([*argv, "--out", str(out)])
            provenance = json.loads((out / "report.json").read_text())["provenance"]
            runs.append((wall, float(provenance["wall_time_s"]), provenance["model_calls"], provenance["rows_evaluated"], out))
        imports = [_timed([sys.executable, "-c", IMPORTS]) for _ in range(repeats)]
        report = runs[0][4] / "report.json"
        renders = [
            _timed([sys.executable, "-m", "audits", "report", str(report), "--html", str(tmp / "r.html"), "--pdf", str(tmp / "r.pdf")]) for _ in range(repeats)
        ]
    # The run whose overhead is the median (wall and audit time from the same process).
    wall, audit, calls, rows_evaluated, _ = sorted(runs, key=lambda r: r[0] - r[1])[len(runs) // 2]
    overhead = wall - audit
    common = {"measured_units": 1, "total_units": 1, "unit": "process", "repeats": repeats}
    rows = [
        Row(
            CASE,
            "ours",
            wall,
            calls,
            rows_evaluated,
            0.0,
            measured_time_s=wall,
            quality={"overhead_s": overhead},
            note=f"python -m audits run --model digits-cnn --threads {threads}{' (quick spec)' if config.quick else ''}: whole process, the run with the median overhead of {repeats}",
            **common,
        ),  # fmt: skip
        Row(
            CASE,
            "audit (engine's recorded duration)",
            audit,
            calls,
            rows_evaluated,
            0.0,
            measured_time_s=audit,
            note="provenance.wall_time_s of the same run",
            **common,
        ),  # fmt: skip
        Row(
            CASE,
            "imports alone (fresh process)",
            statistics.median(imports),
            0,
            0,
            0.0,
            measured_time_s=statistics.median(imports),
            note="the modules audits run imports before the audit, probe registry included; median",
            **common,
        ),  # fmt: skip
        Row(
            CASE,
            "re-render HTML + PDF (fresh process)",
            statistics.median(renders),
            0,
            0,
            0.0,
            measured_time_s=statistics.median(renders),
            note="audits report report.json --html --pdf: no torch, every PDF figure drawn; median",
            **common,
        ),  # fmt: skip
    ]
    checks = [Check(CASE, "overhead beyond the audit <= 2 s (whole-process wall - recorded audit time)", overhead, overhead <= 2.0)]
    notes = [
        f"walls {', '.join(f'{r[0]:.2f}' for r in runs)} s; audits {', '.join(f'{r[1]:.2f}' for r in runs)} s; "
        f"imports {', '.join(f'{t:.2f}' for t in imports)} s; re-renders {', '.join(f'{t:.2f}' for t in renders)} s."
    ]
    return CaseResult(CASE, TITLE, rows, checks, notes)
