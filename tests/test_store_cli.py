"""The store's commands end to end: ``audits run --store``, ``verify``, ``history``, ``import``, ``diff`` on run ids,
``store migrate`` and ``store keygen``; exit codes and messages."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from sqlalchemy import text

from audits.cli import main
from audits.store import open_store
from tests.store_support import SMALL_SPEC, small_audit


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SMALL_SPEC))
    return path


def test_run_records_into_the_store_and_verify_checks_it(tmp_path, image_bundle, spec_file, capsys):
    store_dir = tmp_path / "store"
    argv = ["run", "--model", str(image_bundle["card_path"]), "--spec", str(spec_file), "--no-pdf", "--quiet", "--figures", "0", "--store", str(store_dir), "--fail-on", "never"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    store = open_store(str(store_dir))
    newest, oldest = store.runs()
    assert f"recorded run {oldest.run_id}" in out and f"recorded run {newest.run_id}" in out
    assert store.files(oldest.run_id) == {"html": (tmp_path / "a" / "report.html").resolve()}
    assert store.load_report(oldest.run_id).to_dict() == json.loads((tmp_path / "a" / "report.json").read_text())
    assert (oldest.seed, newest.seed) == (0, 1) and oldest.user and oldest.ended_at >= oldest.started_at

    assert main(["verify", "--store", str(store_dir)]) == 0
    assert "2 record(s), chain intact" in capsys.readouterr().out
    assert main(["history", "--model", "tiny-cnn", "--store", str(store_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 run(s) of tiny-cnn, newest first" and "accuracy" in lines[1]
    assert lines[2].split()[0] == newest.run_id and lines[3].split()[0] == oldest.run_id and "fail" in lines[3]

    # The rendered HTML of the first run is edited: verify names that run and exits 1.
    html = tmp_path / "a" / "report.html"
    html.write_bytes(html.read_bytes().replace(b"</html>", b"<!-- edited --></html>"))
    assert main(["verify", "--store", str(store_dir)]) == 1
    out = capsys.readouterr().out
    assert f"run {oldest.run_id}: its rendered html file" in out and "NOT verified" in out


def test_verify_names_a_deleted_record(tmp_path, image_bundle, capsys):
    store = open_store(str(tmp_path / "s"))
    runs = [store.import_report(small_audit(image_bundle["card_path"], seed)) for seed in (0, 1, 2)]
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM runs WHERE run_id = :r"), {"r": runs[1].run_id})
    assert main(["verify", "--store", str(tmp_path / "s")]) == 1
    out = capsys.readouterr().out
    assert f"run {runs[2].run_id}: its link names run {runs[1].run_id}" in out and "deleted" in out


def test_import_and_diff_by_run_id(tmp_path, image_bundle, tabular_bundle, capsys):
    a = small_audit(image_bundle["card_path"], 0)
    b = small_audit(image_bundle["card_path"], 1)
    other = small_audit(tabular_bundle["card_path"], 0)
    paths = [a.save(tmp_path / "a.json"), b.save(tmp_path / "b.json"), other.save(tmp_path / "o.json")]
    (tmp_path / "a.html").write_text("<html>a</html>")
    store_dir = str(tmp_path / "s")
    assert main(["import", *map(str, paths), "--store", store_dir, "--plan", "imported"]) == 0
    assert "recorded 3 run(s)" in capsys.readouterr().out
    assert main(["import", str(paths[0]), "--store", store_dir]) == 0  # again: skipped, not duplicated
    again = capsys.readouterr().out
    assert "recorded 0 run(s)" in again and f"1 already there: {a.report_id}" in again
    store = open_store(store_dir)
    assert store.count() == 3 and store.files(a.report_id)["html"].name == "a.html" and store.get_run(a.report_id).plan == "imported"

    code = main(["diff", a.report_id, b.report_id, "--store", store_dir])
    out = capsys.readouterr().out
    assert code in (0, 1)
    lines = out.splitlines()
    assert lines[0] == f"Runs {a.report_id} -> {b.report_id}: what changed" and lines[1].split() == ["seed", "0", "->", "1"]
    assert "weights" not in lines[1] and "Audit diff for tiny-cnn" in out
    # A run id and a report file mix; the same run against itself changes nothing.
    assert main(["diff", a.report_id, str(paths[0]), "--store", store_dir]) == 0
    assert "same model weights, data, spec, seed, policy and tool version" in capsys.readouterr().out
    # Two models: refused (exit 2) unless --force.
    assert main(["diff", a.report_id, other.report_id, "--store", store_dir]) == 2
    err = capsys.readouterr().err
    assert "tiny-cnn" in err and "tiny-mlp" in err and "--force" in err
    assert main(["diff", a.report_id, other.report_id, "--store", store_dir, "--force"]) in (0, 1)
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["model", "tiny-cnn", "->", "tiny-mlp"]
    assert main(["diff", "nope", a.report_id, "--store", store_dir]) == 2
    assert "No run 'nope'" in capsys.readouterr().err


def test_diff_names_changed_weights_data_spec_and_policy(image_bundle):
    from audits.store.changes import run_changes

    a = small_audit(image_bundle["card_path"], 0)
    p = a.provenance
    changed = dataclasses.replace(
        a,
        report_id="other",
        provenance=dataclasses.replace(p, weights_sha256="f" * 64, data_sha256="e" * 64, spec={**p.spec, "samples": 9}),
        policy={**a.policy, "name": "strict"},
    )
    changes = run_changes(a, changed)
    assert [c.what for c in changes.changes] == ["weights", "data", "spec", "policy"]
    assert changes.changes[2].detail == "changed: samples" and changes.changes[3].new == "strict" and changes.same_model


def test_migrate_the_former_file_store(tmp_path, image_bundle, capsys):
    from audits.store.legacy import AuditStore

    legacy = AuditStore(tmp_path / "audit-store")
    first = legacy.save(dataclasses.replace(small_audit(image_bundle["card_path"], 0), created_at="2026-01-01T00:00:00+00:00"))
    second = legacy.save(dataclasses.replace(small_audit(image_bundle["card_path"], 1), created_at="2026-02-01T00:00:00+00:00"))
    legacy.write_export(first, "html", b"<html>first</html>")
    url = f"sqlite:///{tmp_path / 'new' / 'audits.db'}"
    assert main(["store", "migrate", "--from", str(tmp_path / "audit-store"), "--store", url]) == 0
    out = capsys.readouterr().out
    assert "recorded 2 run(s)" in out and "2 record(s), chain intact" in out
    store = open_store(url)
    assert [r.run_id for r in store.runs()] == [second.report_id, first.report_id]  # the chain follows time
    assert store.files(first.report_id)["html"].read_bytes() == b"<html>first</html>"
    assert main(["store", "migrate", "--from", str(tmp_path / "audit-store"), "--store", url]) == 0
    assert "recorded 0 run(s)" in capsys.readouterr().out and store.count() == 2
    assert main(["store", "migrate", "--from", str(tmp_path / "nothing"), "--store", url]) == 2
    assert "holds no file store" in capsys.readouterr().err


def test_keygen_and_signed_runs_through_the_cli(tmp_path, image_bundle, monkeypatch, capsys):
    assert main(["store", "keygen", "--out", str(tmp_path / "k" / "signing")]) == 0
    capsys.readouterr()
    monkeypatch.setenv("AUDITS_SIGNING_KEY", str(tmp_path / "k" / "signing.pem"))
    report = small_audit(image_bundle["card_path"])
    assert main(["import", str(report.save(tmp_path / "r.json")), "--store", str(tmp_path / "s")]) == 0
    assert main(["verify", "--store", str(tmp_path / "s"), "--public-key", str(tmp_path / "k" / "signing.pub.pem")]) == 0
    assert "1 signature(s) valid" in capsys.readouterr().out
    assert main(["store", "keygen", "--out", str(tmp_path / "k" / "signing")]) == 2  # never overwrites a key


def test_an_unreachable_store_fails_before_the_audit(tmp_path, image_bundle, spec_file, monkeypatch, capsys):
    monkeypatch.setenv("AUDITS_STORE_CONNECT_S", "1")
    out = tmp_path / "out"
    url = "postgresql+psycopg://audits@127.0.0.1:1/audits"
    assert main(["run", "--model", str(image_bundle["card_path"]), "--spec", str(spec_file), "--out", str(out), "--quiet", "--store", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot reach the store postgresql+psycopg://audits@127.0.0.1:1/audits") and "fix: Start the PostgreSQL server" in err
    assert not out.exists()  # no audit ran, nothing half-written
    assert main(["history", "--model", "tiny-cnn", "--store", str(tmp_path / "empty")]) == 2
    assert "No runs of 'tiny-cnn'" in capsys.readouterr().err
