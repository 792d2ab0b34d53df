"""The benchmark's JSON report as a plain-text table (terminal) or Markdown (BENCHMARKS.md)."""

from __future__ import annotations

import math

_HEAD = ["contender", "wall s", "x ours", "model calls", "rows", "peak MiB", "quality", "note"]


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    if float(v).is_integer() and abs(v) >= 10:
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def _quality(q: dict) -> str:
    return ", ".join(f"{k} {_num(v)}" if not isinstance(v, str) else f"{k} {v}" for k, v in q.items()) or "-"


def _cells(row: dict) -> list[str]:
    time = _num(row["wall_time_s"]) + ("*" if row["extrapolated"] else "")
    return [
        f"{row['group']}: {row['contender']}" if row.get("group") else row["contender"],
        time,
        _num(row["ratio_to_ours"], 3),
        _num(row["model_calls"]),
        _num(row["rows_evaluated"]),
        _num(row["peak_memory_mb"], 3),
        _quality(row["quality"]),
        row["note"],
    ]


def _checks(report: dict, case: str) -> list[str]:
    out = []
    for c in report["checks"]:
        if c["case"] == case:
            mark = {True: "MET", False: "MISSED", None: "n/a"}[c["met"]]
            out.append(f"{mark}: {c['target']} (measured {_num(c['value'])})")
    return out


def format_table(report: dict) -> str:
    """Fixed-width text, one block per case; '*' marks times extrapolated from a subset."""
    lines = []
    m = report["machine"]
    lines.append(
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads, BLAS {m.get('blas_threads')}), load {m['load_average']}"
    )
    for case in report["cases"]:
        rows = [r for r in report["rows"] if r["case"] == case["case"]]
        lines.append("")
        lines.append(f"{case['case']}: {case['title']}")
        table = [_HEAD] + [_cells(r) for r in rows]
        widths = [min(max(len(t[i]) for t in table), 60) for i in range(len(_HEAD))]
        for t in table:
            lines.append("  " + "  ".join(cell[:60].ljust(w) for cell, w in zip(t, widths, strict=True)).rstrip())
        lines += ["  " + c for c in _checks(report, case["case"])]
        lines += ["  note: " + n.splitlines()[0] for n in case["notes"]]
    lines.append("\n* extrapolated from a measured subset (see the note); x ours = contender time / our time")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The same tables in Markdown, for BENCHMARKS.md."""
    out = []
    for case in report["cases"]:
        rows = [r for r in report["rows"] if r["case"] == case["case"]]
        out.append(f"### {case['case']}: {case['title']}\n")
        out.append("| " + " | ".join(_HEAD) + " |")
        out.append("|" + "---|" * len(_HEAD))
        for r in rows:
            out.append("| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |")
        out.append("")
        out += [f"- {c}" for c in _checks(report, case["case"])]
        out += [f"- {n.splitlines()[0]}" for n in case["notes"]]
        out.append("")
    return "\n".join(out)
