"""The store's subcommands: ``verify``, ``history``, ``import``, ``diff`` (run ids or report files) and ``store migrate|keygen``.

``add_parsers(sub)`` adds them to the ``audits`` parser; ``open_cli_store`` and
``record_cli_run`` let ``audits run --store URL`` record its run.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from audits.errors import AuditError

if TYPE_CHECKING:
    from audits.report import AuditReport
    from audits.store import RunRecord, Store

EXIT_TAMPERED = 1
EXIT_REGRESSION = 1
STORE_HELP = "store URL (sqlite:///file.db, postgresql+psycopg://user@host/db) or folder (default: $AUDITS_STORE_URL, else ./audit-store)"


def open_cli_store(url: str | None) -> Store:
    """The store for a command (opened before any work, so a bad URL fails first)."""
    from audits.store import open_store

    return open_store(url)


def record_cli_run(store: Store, report: AuditReport, written: list[Path], started_at: datetime, *, plan: str | None = None) -> RunRecord:
    """Record the run of ``audits run``: its report and the HTML/PDF it rendered."""
    from audits.store import current_user

    files = {p.suffix.lstrip("."): p for p in written if p.suffix in (".html", ".pdf")}
    return store.record_run(
        report,
        model_name=report.provenance.model_name,
        plan=plan,
        started_at=started_at,
        ended_at=datetime.now().astimezone(),
        user=current_user(),
        files=files,
    )


def _cmd_verify(args: argparse.Namespace) -> int:
    store = open_cli_store(args.store)
    result = store.verify(args.public_key)
    print(f"{store.location}: {result.to_text()}")
    return 0 if result.ok else EXIT_TAMPERED


def _cmd_history(args: argparse.Namespace) -> int:
    from audits.store.history import history_rows, history_text

    store = open_cli_store(args.store)
    columns, rows = history_rows(store, args.model, measures=args.measure or None, limit=args.limit)
    if not rows:
        known = ", ".join(store.models()) or "none yet"
        raise AuditError(f"No runs of {args.model!r} in {store.location}.", fix=f"Models with runs: {known}.")
    print(history_text(columns, rows, args.model))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from audits.store.migrate import import_reports

    store = open_cli_store(args.store)
    result = import_reports(store, args.reports, plan=args.plan, user=args.user)
    print(result.to_text(store.location))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from audits.store.migrate import migrate_file_store

    store = open_cli_store(args.store)
    result = migrate_file_store(store, args.source)
    print(result.to_text(store.location))
    verification = store.verify()
    print(verification.to_text())
    return 0 if verification.ok else EXIT_TAMPERED


def _cmd_keygen(args: argparse.Namespace) -> int:
    from audits.store.signing import SIGNING_KEY_ENV, generate_key_pair

    private, public = generate_key_pair(args.out)
    print(f"wrote {private} (private, keep it secret) and {public} (public)")
    print(f"sign runs with: export {SIGNING_KEY_ENV}={private}; check them with: audits verify --public-key {public}")
    return 0


def _load_side(ref: str, store_url: str | None, stores: dict) -> AuditReport:
    """A report from a file path, else from the store by run id."""
    from audits.report import AuditReport

    path = Path(ref)
    if path.suffix == ".json" or path.is_file():
        return AuditReport.load(path)
    if "store" not in stores:
        stores["store"] = open_cli_store(store_url)
    return stores["store"].load_report(ref)


def _cmd_diff(args: argparse.Namespace) -> int:
    """What changed between two runs (inputs first), then the findings and measurements; exit 1 on a regression."""
    from audits.diff import diff_reports
    from audits.policy import apply_policy, load_policy
    from audits.report import write_atomic
    from audits.store.changes import run_changes

    stores: dict = {}
    old, new = _load_side(args.old, args.store, stores), _load_side(args.new, args.store, stores)
    changes = run_changes(old, new)
    if not changes.same_model and not args.force:
        raise AuditError(
            f"Run {args.old} audits {old.provenance.model_name} and run {args.new} audits {new.provenance.model_name}: a diff of two models compares unlike things.",
            fix="Compare two runs of one model (audits history --model NAME lists them), or pass --force.",
        )
    if args.policy:
        policy = load_policy(args.policy)
        old, new = apply_policy(old, policy), apply_policy(new, policy)
    print(changes.to_text())
    diff = diff_reports(old, new)
    print(diff.to_text())
    if args.html:
        from audits.render.html import render_diff_html

        print(f"wrote {write_atomic(Path(args.html), render_diff_html(diff).encode())}")
    return EXIT_REGRESSION if diff.regressed else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``verify``, ``history``, ``import``, ``diff`` and ``store`` to the ``audits`` parser."""
    verify = sub.add_parser("verify", help="walk the store's hash chain; exit 1 naming the first record that was changed or deleted")
    verify.add_argument("--store", help=STORE_HELP)
    verify.add_argument("--public-key", help="Ed25519 public key (PEM): every record must carry a valid signature (default: $AUDITS_VERIFY_KEY)")
    verify.set_defaults(func=_cmd_verify)

    hist = sub.add_parser("history", help="a model's recorded runs with verdicts and key measurements, newest first")
    hist.add_argument("--model", required=True, help="model name")
    hist.add_argument("--measure", action="append", help="measurement name or key to show (repeatable; default: the first whole-model measurements)")
    hist.add_argument("--limit", type=int, help="newest N runs only")
    hist.add_argument("--store", help=STORE_HELP)
    hist.set_defaults(func=_cmd_history)

    imp = sub.add_parser("import", help="record existing report.json files (and the HTML/PDF beside them) as runs")
    imp.add_argument("reports", nargs="+", help="report.json files")
    imp.add_argument("--plan", help="plan name to record them under")
    imp.add_argument("--user", help="who ran them (default: you)")
    imp.add_argument("--store", help=STORE_HELP)
    imp.set_defaults(func=_cmd_import)

    diff = sub.add_parser("diff", help="what changed between two runs (run ids or report files); exit 1 when a finding regressed")
    diff.add_argument("old", help="the earlier run id or report.json")
    diff.add_argument("new", help="the later run id or report.json")
    diff.add_argument("--store", help=STORE_HELP + " (for run ids)")
    diff.add_argument("--force", action="store_true", help="compare runs of two different models")
    diff.add_argument("--html", help="also write the differences as an HTML page")
    diff.add_argument("--policy", help="re-evaluate both reports against this policy first")
    diff.set_defaults(func=_cmd_diff)

    store = sub.add_parser("store", help="store maintenance: migrate the former file store, make a signing key")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    migrate = store_sub.add_parser("migrate", help="record every report of a former folder store (reports/<model>/*.json) in the SQL store")
    migrate.add_argument("--from", dest="source", default="audit-store", help="the former store folder (default audit-store)")
    migrate.add_argument("--store", help=STORE_HELP)
    migrate.set_defaults(func=_cmd_migrate)
    keygen = store_sub.add_parser("keygen", help="make an Ed25519 key pair for signing run records")
    keygen.add_argument("--out", required=True, help="path prefix: writes PREFIX.pem (private) and PREFIX.pub.pem")
    keygen.set_defaults(func=_cmd_keygen)
