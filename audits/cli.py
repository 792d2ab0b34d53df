"""The ``audits`` command: a thin face over the engine."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from audits.commands import store_commands
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


def _audit_one(
    model_ref: str, *, spec_path: str | None, out: Path, device: str | None, data_path: str | None, samples: int | None, seed: int | None, figures: int, quiet: bool,
    policy_path: str | None = None, pdf: bool = True, html: bool = True, store_url: str | None = None, threads: int | None = None,
    stream_above: int | None = None, subset_rows: int | None = None,
):  # fmt: skip
    from audits.data import load_data
    from audits.engine import check_torch_version, run_audit
    from audits.output_folder import replaced_folder
    from audits.policy import apply_policy, load_policy
    from audits.render.export import DrawingAhead, write_figures, write_outputs
    from audits.spec import AuditSpec, load_spec, parse_spec
    from models.device import set_cpu_threads
    from models.loader import load_model
    from models.registry import resolve_card

    started = time.perf_counter()
    check_torch_version()  # before any model file is opened
    set_cpu_threads(threads)
    started_at = datetime.now().astimezone()
    store = store_commands.open_cli_store(store_url) if store_url else None  # an unreachable store fails before the audit
    policy = load_policy(policy_path)  # a bad policy fails before the audit, not after
    card = resolve_card(model_ref)
    spec = load_spec(spec_path) if spec_path else AuditSpec()
    overrides = {k: v for k, v in (("samples", samples), ("seed", seed)) if v is not None}
    if overrides:  # through the parser, so --samples 0 is refused like samples: 0 in a spec file
        spec = parse_spec({**spec.model_dump(exclude_unset=True), **overrides}, source=f"{spec_path or '(defaults)'} with {' and '.join(f'--{k} {v}' for k, v in overrides.items())}")
    handle = load_model(card, device=device)
    # A file above the streaming threshold: the probes' subset is drawn with the audit's seed.
    data = load_data(card, data_path, seed=spec.seed, stream_above_rows=stream_above, subset_rows=subset_rows)
    update, close = _progress_bar(card.name) if not quiet else (None, lambda: None)
    ahead = DrawingAhead(data.class_names, data.modality) if pdf else None  # the PDF's figures, drawn while the audit runs
    try:
        try:
            report = run_audit(handle, data, spec, progress=update, on_result=ahead.add if ahead else None)
        finally:
            close()
        if ahead is not None:
            ahead.finish()
        report = apply_policy(report, policy)
        with replaced_folder(out) as stage:  # all outputs at once: a killed run leaves the earlier audit whole
            staged = write_outputs(
                report, json_path=stage / "report.json", html_path=stage / "report.html" if html else None, pdf_path=stage / "report.pdf" if pdf else None, workers=2, ahead=ahead
            )
            staged_figures = write_figures(report, stage, figures)
    finally:
        if ahead is not None:
            ahead.close()
    written = [out / p.relative_to(stage) for p in staged]
    figures_written = [out / p.relative_to(stage) for p in staged_figures]
    report_path = written[0]
    _print_summary(report, report_path, figures_written, time.perf_counter() - started)
    if len(written) > 1:
        print(f"  rendered {', '.join(str(p) for p in written[1:])}")
    if store is not None:
        print(f"  recorded run {store_commands.record_cli_run(store, report, written, started_at).run_id} in {store.location}")
    return report


def _print_summary(report, report_path: Path, figures: list[Path], elapsed: float) -> None:
    p, perf = report.provenance, report.performance
    lines = [
        f"Audit of {p.model_name} ({p.model_format}, {p.parameter_count:,} parameters, sha256 {p.weights_sha256[:12]}) on {p.device}",
        f"  data: {report.data_summary.n_rows} rows from {Path(p.data_source).name}; accuracy {perf.accuracy:.4f}, ECE {perf.ece:.4f}",
    ]
    for r in report.probe_results():
        headline = r.headline()
        lines.append(f"  {r.method:<22} {r.cost.wall_time_s:6.2f} s {r.cost.model_calls:6d} calls {r.cost.rows_evaluated:>11,} rows" + (f"  {headline}" if headline else ""))
    for s in report.skipped:
        lines.append(f"  skipped {s.name}: {s.reason}")
    for f in report.failures:
        lines.append(f"  FAILED {f.name}: {f.error}" + (f" Fix: {f.fix}" if f.fix else ""))
    lines.append(f"  wrote {report_path}" + (f" and {len(figures)} figure(s) in {figures[0].parent}" if figures else ""))
    lines.append(f"  {p.model_calls} model calls, {p.rows_evaluated:,} rows, audit {p.wall_time_s:.1f} s, total {elapsed:.1f} s; report id {report.report_id}")
    if report.findings:
        from audits.policy import overall_verdict, status_counts

        counts = status_counts(report.findings)
        lines.append(f"  policy {report.policy.get('name', '?')}: {overall_verdict(report.findings).upper()} ({counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass, {counts['not_evaluated']} not evaluated)")
    print("\n".join(lines))


def _cmd_run(args: argparse.Namespace) -> int:
    from audits.commands.scan_commands import EXIT_CRASH, run_exit_code
    from audits.findings import overall_verdict

    try:
        report = _audit_one(
            args.model, spec_path=args.spec, out=Path(args.out), device=args.device, data_path=args.data, samples=args.samples, seed=args.seed, figures=args.figures, quiet=args.quiet,
            policy_path=args.policy, pdf=not args.no_pdf, html=not args.no_html, store_url=args.store, threads=args.threads,
            stream_above=args.stream_above, subset_rows=args.subset_rows,
        )  # fmt: skip
    except (AuditError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the audit crashed: exit 3 (as audits scan), not 1, which means 'a policy fails'
        print(f"error: the audit crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_CRASH
    return run_exit_code(overall_verdict(report.findings), args.fail_on)


def _cmd_report(args: argparse.Namespace) -> int:
    """Re-render a report.json (and re-evaluate its findings with --policy) without recomputing."""
    from audits.policy import apply_policy, load_policy, overall_verdict, status_counts
    from audits.render.export import write_outputs
    from audits.report import AuditReport

    started = time.perf_counter()
    source = Path(args.report)
    report = AuditReport.load(source, verify=True)  # an edited report is refused, not re-rendered
    if not report.content_sha256:
        print(f"warning: {source} records no content hash (written by an older version): edits to it cannot be detected.", file=sys.stderr)
    if args.policy:
        report = apply_policy(report, load_policy(args.policy))
    pdf, html = args.pdf, args.html
    if pdf is None and html is None and args.json is None:
        pdf, html = str(source.with_suffix(".pdf")), str(source.with_suffix(".html"))
    written = write_outputs(report, json_path=args.json, html_path=html, pdf_path=pdf, workers=2)
    counts = status_counts(report.findings)
    verdict = overall_verdict(report.findings).upper() if report.findings else "NO POLICY"
    print(f"{report.provenance.model_name} report {report.report_id}: {verdict} ({counts['fail']} fail, {counts['warn']} warn, {counts['pass']} pass, {counts['not_evaluated']} not evaluated)")
    print(f"  wrote {', '.join(str(p) for p in written) or 'nothing'} in {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from models.registry import zoo_names

    names = zoo_names()
    if not names:
        raise AuditError("The demo zoo is empty.", fix="Rebuild it with: python -m models.build_zoo")
    for name in names:
        _audit_one(name, spec_path=args.spec, out=Path(args.out) / name, device=args.device, data_path=None, samples=None, seed=None, figures=args.figures, quiet=args.quiet, threads=args.threads)
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


def _cmd_dashboard(args: argparse.Namespace) -> int:
    """Launch the Streamlit dashboard (bound to localhost unless --host says otherwise)."""
    import os
    import subprocess
    from importlib.util import find_spec

    from audits.uploads import MAX_UPLOAD_MB
    from models.registry import zoo_names

    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    if not app.is_file():
        raise AuditError(f"The dashboard is not installed ({app} is missing).", fix="Install the project with: pip install -e .")
    if find_spec("streamlit") is None:
        raise AuditError("Streamlit is not installed.", fix="Install the project's dependencies with: pip install -e .")
    settings = {
        "server.address": args.host,
        "server.port": str(args.port),
        "server.headless": "true",
        "server.enableXsrfProtection": "true",
        "server.maxUploadSize": str(MAX_UPLOAD_MB),
        "server.fileWatcherType": "none",
        "browser.gatherUsageStats": "false",
        "client.showErrorDetails": "none",
        "client.toolbarMode": "viewer",
    }
    # Fail closed: secrets that do not parse or an incomplete [auth] section stop here, with the
    # parse error, before the server starts (Streamlit alone would start without sign-in).
    from dashboard.auth_config import auth_from_files, server_secrets_files

    sign_in = auth_from_files(server_secrets_files(app, settings))
    if args.host not in ("localhost", "127.0.0.1", "::1") and sign_in is None:
        print(f"warning: listening on {args.host} without sign-in: anyone who can reach it can use the dashboard ([auth] in .streamlit/secrets.toml; see docs/dashboard.md).", file=sys.stderr)
    if not zoo_names():
        print("The demo zoo is empty: training it first (about a minute on 2 cores)...", flush=True)
        subprocess.run([sys.executable, "-m", "models.build_zoo"], check=True)
    command = [sys.executable, "-m", "streamlit", "run", str(app)] + [part for k, v in settings.items() for part in (f"--{k}", v)]
    print(f"Dashboard on http://{'localhost' if args.host in ('localhost', '127.0.0.1', '::1') else args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    if os.name == "posix":
        os.execv(sys.executable, command)  # become the server: signals (Ctrl+C, SIGTERM) reach it directly
    return subprocess.call(command)


def _cmd_worker(args: argparse.Namespace) -> int:
    """Run queued audit jobs from the store (the dashboard queues them) until idle for --idle-exit seconds."""
    from audits.worker import work

    done = work(store_commands.open_cli_store(args.store), idle_exit_s=args.idle_exit, max_jobs=1 if args.once else None)
    for job in done:
        print(f"job {job.job_id} ({job.model_name}): {job.status}" + (f", run {job.run_id}" if job.run_id else "") + (f": {job.error}" if job.error else ""))
    return 0


def _rows(text: str) -> int:
    """A row count of at least 1, for argparse (it turns the ValueError into a usage error naming the option)."""
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise ValueError(text)
    return value


_rows.__name__ = "row count"  # argparse names the type in its message: "invalid row count value: '0'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audits", description="Explainability, robustness and fairness audits for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spec", help="audit spec YAML (default: the built-in defaults)")
        p.add_argument("--device", help="cpu, cuda or cuda:N (default: $AUDITS_DEVICE, else CUDA when available, else CPU)")
        p.add_argument("--figures", type=int, default=8, help="samples to draw attribution figures for (default 8)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own; 1 on a busy shared machine)")

    run = sub.add_parser("run", help="audit one model and write report.json, report.html, report.pdf and attribution figures")
    run.add_argument("--model", required=True, help="zoo model name or path of a model card YAML")
    run.add_argument("--out", required=True, help="output folder")
    run.add_argument("--data", help="evaluation data file overriding the card's")
    run.add_argument("--samples", type=int, help="samples to explain (overrides the spec)")
    run.add_argument("--seed", type=int, help="seed (overrides the spec)")
    run.add_argument("--policy", help="policy YAML the findings are checked against (default: the shipped default policy)")
    run.add_argument("--no-pdf", action="store_true", help="do not render report.pdf")
    run.add_argument("--no-html", action="store_true", help="do not render report.html")
    run.add_argument("--store", help="also record the run in this store (URL or folder; see audits verify --help)")
    run.add_argument("--fail-on", choices=("fail", "warn", "never"), default="fail", help="exit 1 when the verdict is fail (default), fail or warn, or never; bad input exits 2, a crashed audit 3")
    run.add_argument(
        "--stream-above", type=_rows, metavar="ROWS",
        help="a tabular file of more rows is streamed in chunks (performance and group metrics over every row, other probes on a seeded subset) instead of loaded whole (default 250000)",
    )  # fmt: skip
    run.add_argument("--subset-rows", type=_rows, metavar="ROWS", help="rows of a streamed file's seeded subset that the other probes use (default 100000)")
    common(run)
    run.set_defaults(func=_cmd_run)

    report = sub.add_parser("report", help="re-render a report.json as PDF and HTML (no recomputation)")
    report.add_argument("report", help="path of a report.json")
    report.add_argument("--pdf", help="PDF to write (default, with neither --pdf nor --html: beside the JSON)")
    report.add_argument("--html", help="HTML to write")
    report.add_argument("--policy", help="re-evaluate the findings against this policy YAML")
    report.add_argument("--json", help="also write the (re-evaluated) report JSON here")
    report.set_defaults(func=_cmd_report)

    demo = sub.add_parser("demo", help="audit every zoo model into OUT/<model>/")
    demo.add_argument("--out", default="audit-output", help="output folder (default audit-output)")
    common(demo)
    demo.set_defaults(func=_cmd_demo)

    models = sub.add_parser("models", help="list the demo zoo")
    models.set_defaults(func=_cmd_models)

    dashboard = sub.add_parser("dashboard", help="launch the web dashboard (Streamlit) on http://localhost:8501")
    dashboard.add_argument("--host", default="localhost", help="address to listen on (default localhost: this machine only)")
    dashboard.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    dashboard.set_defaults(func=_cmd_dashboard)
    worker = sub.add_parser("worker", help="run the audits queued in the store (the dashboard's background jobs)")
    worker.add_argument("--store", help=store_commands.STORE_HELP)
    worker.add_argument("--idle-exit", type=float, default=None, metavar="S", help="stop after S seconds with no queued job (default: run until stopped)")
    worker.add_argument("--once", action="store_true", help="run one job (waiting for one when --idle-exit allows) and stop")
    worker.set_defaults(func=_cmd_worker)
    store_commands.add_parsers(sub)  # verify, history, import, diff, store

    from audits.commands import scan_commands

    scan_commands.add_parsers(sub)
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
