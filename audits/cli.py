"""The ``audits`` command: a thin face over the engine."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from audits.errors import AuditError

EXIT_BAD_INPUT = 2


def _progress_bar(label: str):
    """A tqdm bar on a terminal; silent otherwise. Returns (callback, close)."""
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, desc=label, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}]", file=sys.stderr)

    def update(fraction: float, message: str) -> None:
        bar.n = int(round(fraction * 100))
        bar.set_postfix_str(message[:40])
        bar.refresh()

    return update, bar.close


def _write_figures(report, data, out: Path, max_samples: int) -> list[Path]:
    from audits.render.attribution_figures import global_importance_figure, image_attribution_grid, save_figure, tabular_sample_figure

    written: list[Path] = []
    results = report.explanations
    if not results:
        return written
    fig_dir = out / "attributions"
    fig_dir.mkdir(parents=True, exist_ok=True)
    if data.modality == "image":
        for start in range(0, min(max_samples, len(results[0].sample_indices)), 4):
            sliced = [_rows(r, start, start + 4) for r in results]
            path = fig_dir / f"samples_{start:03d}.png"
            save_figure(image_attribution_grid(sliced, data.x, data.y, data.class_names), path)
            written.append(path)
    else:
        path = fig_dir / "global_importance.png"
        save_figure(global_importance_figure(results), path)
        written.append(path)
        # Per-sample charts from the Shapley values when present (exact for few features).
        first = next((r for r in results if r.method == "kernel_shap"), results[0])
        for row in range(min(max_samples, len(first.sample_indices))):
            idx = int(first.sample_indices[row])
            raw = data.raw.iloc[idx].to_dict() if data.raw is not None else None
            path = fig_dir / f"sample_{idx:05d}_{first.method}.png"
            save_figure(tabular_sample_figure(first, row, data.class_names, raw), path)
            written.append(path)
    return written


def _rows(result, start: int, stop: int):
    import dataclasses

    sl = slice(start, stop)
    return dataclasses.replace(result, sample_indices=result.sample_indices[sl], targets=result.targets[sl], attributions=result.attributions[sl])


def _audit_one(model_ref: str, *, spec_path: str | None, out: Path, device: str | None, data_path: str | None, samples: int | None, seed: int | None, figures: int, quiet: bool) -> int:
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.spec import AuditSpec, load_spec
    from models.loader import load_model
    from models.registry import resolve_card

    started = time.perf_counter()
    card = resolve_card(model_ref)
    spec = load_spec(spec_path) if spec_path else AuditSpec()
    overrides = {k: v for k, v in (("samples", samples), ("seed", seed)) if v is not None}
    if overrides:
        spec = spec.model_copy(update=overrides)
    handle = load_model(card, device=device)
    data = load_data(card, data_path)
    update, close = _progress_bar(card.name) if not quiet else (None, lambda: None)
    try:
        report = run_audit(handle, data, spec, progress=update)
    finally:
        close()
    out.mkdir(parents=True, exist_ok=True)
    report_path = report.save(out / "report.json")
    rows = report.data_summary.row_indices
    audited = data if rows is None else data.subset(rows)
    figures_written = _write_figures(report, audited, out, figures)
    _print_summary(report, report_path, figures_written, time.perf_counter() - started)
    return 0


def _print_summary(report, report_path: Path, figures: list[Path], elapsed: float) -> None:
    p, perf = report.provenance, report.performance
    lines = [
        f"Audit of {p.model_name} ({p.model_format}, {p.parameter_count:,} parameters, sha256 {p.weights_sha256[:12]}) on {p.device}",
        f"  data: {report.data_summary.n_rows} rows from {Path(p.data_source).name}; accuracy {perf.accuracy:.4f}, ECE {perf.ece:.4f}",
    ]
    for r in report.explanations + report.robustness + report.fairness:
        headline = r.headline()
        lines.append(f"  {r.method:<22} {r.cost.wall_time_s:6.2f} s {r.cost.model_calls:6d} calls {r.cost.rows_evaluated:>11,} rows" + (f"  {headline}" if headline else ""))
    for s in report.skipped:
        lines.append(f"  skipped {s.name}: {s.reason}")
    for f in report.failures:
        lines.append(f"  FAILED {f.name}: {f.error}" + (f" Fix: {f.fix}" if f.fix else ""))
    lines.append(f"  wrote {report_path}" + (f" and {len(figures)} figure(s) in {figures[0].parent}" if figures else ""))
    lines.append(f"  {p.model_calls} model calls, {p.rows_evaluated:,} rows, audit {p.wall_time_s:.1f} s, total {elapsed:.1f} s; report id {report.report_id}")
    print("\n".join(lines))


def _cmd_run(args: argparse.Namespace) -> int:
    return _audit_one(args.model, spec_path=args.spec, out=Path(args.out), device=args.device, data_path=args.data, samples=args.samples, seed=args.seed, figures=args.figures, quiet=args.quiet)


def _cmd_demo(args: argparse.Namespace) -> int:
    from models.registry import zoo_names

    names = zoo_names()
    if not names:
        raise AuditError("The demo zoo is empty.", fix="Rebuild it with: python -m models.build_zoo")
    for name in names:
        _audit_one(name, spec_path=args.spec, out=Path(args.out) / name, device=args.device, data_path=None, samples=None, seed=None, figures=args.figures, quiet=args.quiet)
        print()
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from models.registry import ZOO_DIR, zoo_cards

    cards = zoo_cards()
    if not cards:
        print("The zoo is empty: rebuild it with python -m models.build_zoo")
        return 0
    print(f"{'name':<14} {'modality':<9} {'format':<12} {'classes':<8} {'sensitive':<26} card")
    for c in cards:
        sensitive = ", ".join(c.data.sensitive) if c.data else "-"
        print(f"{c.name:<14} {c.modality:<9} {c.format:<12} {c.n_classes:<8} {sensitive:<26} {(c.base_dir / 'card.yaml').relative_to(ZOO_DIR.parent.parent)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audits", description="Explainability, robustness and fairness audits for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spec", help="audit spec YAML (default: the built-in defaults)")
        p.add_argument("--device", help="cpu, cuda or cuda:N (default: $AUDITS_DEVICE, else CUDA when available, else CPU)")
        p.add_argument("--figures", type=int, default=8, help="samples to draw attribution figures for (default 8)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    run = sub.add_parser("run", help="audit one model and write report.json and attribution figures")
    run.add_argument("--model", required=True, help="zoo model name or path of a model card YAML")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--data", help="evaluation data file overriding the card's")
    run.add_argument("--samples", type=int, help="samples to explain (overrides the spec)")
    run.add_argument("--seed", type=int, help="seed (overrides the spec)")
    common(run)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="audit every zoo model into OUT/<model>/")
    demo.add_argument("--out", default="audit-output", help="output folder (default audit-output)")
    common(demo)
    demo.set_defaults(func=_cmd_demo)

    models = sub.add_parser("models", help="list the demo zoo")
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AuditError as exc:
        message = f"error: {exc.problem}" + (f"\nfix: {exc.fix}" if exc.fix else "")
        print(message, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
