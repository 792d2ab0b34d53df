"""Hostile and broken input files: refused with one message naming the problem and the fix, in bounded memory.

Each test builds the hostile file itself (a YAML bomb, a very wide CSV, a card pointing outside its
folder, a run killed mid-write) and runs it through the same paths a user or an uploader reaches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from audits.data import MAX_COLUMNS, load_data
from audits.errors import CardError, DataError, ReportError, SpecError
from audits.policy import PolicyError, load_policy
from audits.spec import load_spec
from models.card import MAX_NOTES_CHARS, load_card, parse_card, parse_card_text

from .conftest import write_card

REPO = Path(__file__).resolve().parents[1]

# Nine levels of ten aliases each: 10**9 strings once expanded, a few hundred bytes as written.
BILLION_LAUGHS = textwrap.dedent(
    """\
    notes:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """
)


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)


def _peak_mb_of(code: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter; how far (MB) its peak resident memory rose above the memory at the start.

    The kernel's peak (VmHWM) is reset just before ``code`` (``/proc/self/clear_refs``), so the imports'
    own peak does not hide what ``code`` costs.
    """
    wrapper = "\n".join(
        [
            "import re, sys",
            "import audits.data, audits.engine, audits.policy, audits.render.export, audits.spec, audits.cli, models.card, models.loader, models.registry",
            "def status(key):",
            "    return int(re.search(key + r':\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))",
            "open('/proc/self/clear_refs', 'w').write('5')",
            "before = status('VmRSS')",
            "try:",
            textwrap.indent(code, "    "),
            "finally:",
            "    print('PEAK_GROWTH_KB', status('VmHWM') - before, file=sys.stderr)",
        ]
    )
    proc = _python(wrapper)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PEAK_GROWTH_KB"))
    return int(line.split()[1]) / 1024, proc


# ------------------------------------------------------------------------------------------- YAML


def test_yaml_bomb_in_card_notes_is_refused_at_parse_in_bounded_memory(tmp_path, image_bundle):
    card = image_bundle["card_path"].read_text() + BILLION_LAUGHS
    path = image_bundle["dir"] / "card.yaml"
    path.write_text(card)
    with pytest.raises(CardError) as info:
        load_card(path)
    assert "alias" in info.value.problem and "in full" in info.value.fix
    # Through the CLI, in a fresh process: exit 2, the message, and no memory blow-up.
    growth, proc = _peak_mb_of(f"from audits.cli import main\nsys.exit(main(['run', '--model', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet']))")
    assert proc.returncode == 2, proc.stderr
    assert "alias" in proc.stderr and "Traceback" not in proc.stderr
    assert growth < 50, growth
    assert not (tmp_path / "out").exists()


def test_yaml_bomb_in_an_uploaded_card_is_refused(tmp_path, image_bundle):
    from audits.uploads import ModelUploads, UploadedFile

    folder = image_bundle["dir"]
    bomb = UploadedFile("card.yaml", (yaml.safe_dump(image_bundle["card"]) + BILLION_LAUGHS).encode())
    files = [UploadedFile(n, (folder / n).read_bytes()) for n in ("weights.safetensors", "eval.npz", "attrs.csv")]
    store = ModelUploads(tmp_path / "store")
    with pytest.raises(CardError, match="alias"):
        store.register_model(bomb, *files)
    assert not store.model_card_paths()


def test_notes_are_capped_without_walking_an_expanded_structure(tmp_path, image_bundle):
    shared: list = ["lol"] * 10
    for _ in range(8):  # what aliases build: one list referenced 10**8 times
        shared = [shared] * 10
    started = time.perf_counter()
    with pytest.raises(CardError, match=r"notes: notes hold more than"):
        parse_card({**image_bundle["card"], "notes": {"a": shared}}, base_dir=tmp_path)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(CardError, match="notes"):
        parse_card({**image_bundle["card"], "notes": {"long": "x" * (MAX_NOTES_CHARS + 1)}}, base_dir=tmp_path)
    assert parse_card({**image_bundle["card"], "notes": {"recipe": "models/recipes/x.py"}}, base_dir=tmp_path).notes == {"recipe": "models/recipes/x.py"}


def test_oversized_and_deeply_nested_yaml_is_refused(tmp_path):
    big = tmp_path / "card.yaml"
    big.write_text("notes: " + "x" * (2 << 20))
    with pytest.raises(CardError, match="limited to 1 MB"):
        load_card(big)
    deep = tmp_path / "spec.yaml"
    deep.write_text("probes: " + "[" * 50_000 + "]" * 50_000)
    with pytest.raises(SpecError) as info:
        load_spec(deep)
    assert "nested" in info.value.problem or "YAML" in info.value.problem


def test_policy_and_spec_files_refuse_aliases(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: p\nchecks:\n  - &c {check: min_accuracy, threshold: 0.5}\n  - *c\n")
    with pytest.raises(PolicyError, match="alias"):
        load_policy(policy)
    spec = tmp_path / "spec.yaml"
    spec.write_text("exclude: &e [lime]\nprobes: *e\n")
    with pytest.raises(SpecError, match="alias"):
        load_spec(spec)


def test_validation_errors_name_list_items_by_their_name(tmp_path, tabular_bundle):
    card = yaml.safe_load(tabular_bundle["card_path"].read_text())
    card["input"]["features"][3]["levels"] = [True, False]  # YAML's `levels: [yes, no]`
    with pytest.raises(CardError) as info:
        parse_card(card, base_dir=tmp_path)
    assert "input.tabular.features[3] ('group').categorical.levels[0]" in info.value.problem
    assert "quote it" in info.value.problem
    spec = tmp_path / "spec.yaml"
    spec.write_text("probes:\n  - name: lime\n    paramz: {}\n")
    with pytest.raises(SpecError, match=r"probes\[0\] \('lime'\)\.paramz"):
        load_spec(spec)


def test_categorical_levels_written_as_numbers_are_read_as_text(tabular_bundle):
    folder = tabular_bundle["dir"]
    frame = tabular_bundle["frame"].copy()
    frame["group"] = (frame["group"] == "b").astype(int)  # codes 0/1 in the data
    frame.to_csv(folder / "eval.csv", index=False)
    card = yaml.safe_load(tabular_bundle["card_path"].read_text())
    card["input"]["features"][3]["levels"] = [0, 1]
    card["data"]["sensitive"] = []
    path = write_card(folder, card)
    assert yaml.safe_load(path.read_text())["input"]["features"][3]["levels"] == [0, 1]  # numbers, as a user writes them
    loaded = load_card(path)
    assert loaded.input.features[3].levels == ["0", "1"]
    data = load_data(loaded)
    np.testing.assert_array_equal(data.x[:, 6], frame["group"].to_numpy(dtype=np.float32))


# ------------------------------------------------------------------------------------------- data


def _wide_csv(path: Path, extra_columns: int, rows: int, frame: pd.DataFrame) -> None:
    """``frame`` plus ``extra_columns`` unused integer columns, written without building them in memory."""
    filler_header = ",".join(f"u{i}" for i in range(extra_columns))
    filler_row = ",".join(["7"] * extra_columns)
    with open(path, "w") as fh:
        fh.write(",".join(frame.columns) + "," + filler_header + "\n")
        for i in range(rows):
            fh.write(",".join(str(v) for v in frame.iloc[i % len(frame)]) + "," + filler_row + "\n")


def test_a_million_unused_columns_are_refused_in_bounded_memory(tabular_bundle):
    path = tabular_bundle["dir"] / "eval.csv"
    _wide_csv(path, 1_000_000, 40, tabular_bundle["frame"])
    assert path.stat().st_size > 80e6
    growth, proc = _peak_mb_of(
        f"from audits.data import load_data\nfrom models.card import load_card\nload_data(load_card({str(tabular_bundle['card_path'])!r}))"
    )
    assert "DataError" in proc.stderr and "header line longer than 1 MB" in proc.stderr, proc.stderr[-2000:]
    assert growth < 50, growth


def test_only_the_columns_the_card_needs_are_read(tabular_bundle):
    path = tabular_bundle["dir"] / "eval.csv"
    _wide_csv(path, 2_000, 6_000, tabular_bundle["frame"])  # ~24 MB; read whole it costs ~100 MB of int64 alone
    growth, proc = _peak_mb_of(
        f"from audits.data import load_data\nfrom models.card import load_card\nd = load_data(load_card({str(tabular_bundle['card_path'])!r}))\nprint(d.x.shape, list(d.attributes.columns))"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(6000, 7) ['group']" in proc.stdout
    assert growth < 80, growth  # 32 MB measured; 252 MB when every column was read
    _wide_csv(path, MAX_COLUMNS + 1, 2, tabular_bundle["frame"])
    with pytest.raises(DataError, match="columns; evaluation data is limited"):
        load_data(load_card(tabular_bundle["card_path"]))


def test_a_line_past_the_limit_is_refused(text_bundle):
    frame = text_bundle["frame"].copy()
    frame.loc[5, "text"] = "word " * 300_000  # 1.5 MB on one line
    frame.to_csv(text_bundle["dir"] / "eval.csv", index=False)
    with pytest.raises(DataError, match=r"line longer than 1 MB \(line 7\)"):
        load_data(load_card(text_bundle["card_path"]))


def test_zero_rows_are_a_clear_error(tabular_bundle, image_bundle, text_bundle):
    tabular_bundle["frame"].iloc[:0].to_csv(tabular_bundle["dir"] / "eval.csv", index=False)
    with pytest.raises(DataError, match="no rows"):
        load_data(load_card(tabular_bundle["card_path"]))
    text_bundle["frame"].iloc[:0].to_csv(text_bundle["dir"] / "eval.csv", index=False)
    with pytest.raises(DataError, match="no rows"):
        load_data(load_card(text_bundle["card_path"]))
    np.savez(image_bundle["dir"] / "eval.npz", x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="holds no images"):
        load_data(load_card(image_bundle["card_path"]))


# ------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize("tokenizer", ["../elsewhere/tokenizer", "/etc", "link"])
def test_an_uploaded_card_may_not_point_outside_its_folder(tmp_path, text_bundle, tokenizer):
    (tmp_path / "elsewhere" / "tokenizer").mkdir(parents=True)
    base = tmp_path / "upload"
    base.mkdir()
    (base / "link").symlink_to(tmp_path / "elsewhere" / "tokenizer")
    card = {**text_bundle["card"], "format": "safetensors", "weights": "w.safetensors", "architecture": {"target": "models.architectures:TabularMLP"}}
    card["input"] = {**card["input"], "tokenizer": tokenizer}
    with pytest.raises(CardError) as info:
        parse_card(card, base_dir=base, confine=True)
    assert "input.tokenizer" in info.value.problem and "outside the card's own folder" in info.value.problem
    parse_card(card, base_dir=base)  # a card on the operator's own disk (CLI) may point anywhere
    card["input"]["tokenizer"] = "tokenizer"
    parse_card(card, base_dir=base, confine=True)


def test_the_upload_path_refuses_a_tokenizer_outside_the_upload(tmp_path, text_bundle):
    from audits.uploads import ModelUploads, UploadedFile

    card = {**text_bundle["card"], "format": "safetensors", "weights": "w.safetensors", "architecture": {"target": "models.text_architectures:x"}}
    card["input"] = {**card["input"], "tokenizer": str(text_bundle["dir"] / "model")}
    store = ModelUploads(tmp_path / "store")
    upload = [UploadedFile("card.yaml", yaml.safe_dump(card).encode()), UploadedFile("w.safetensors", b"{}"), UploadedFile("eval.csv", b"text,label\nx,0\n")]
    with pytest.raises(CardError, match="input.tokenizer .* points outside"):
        store.register_model(*upload)
    assert not store.model_card_paths()


def test_parse_card_text_refuses_a_non_mapping():
    with pytest.raises(CardError, match="must be a YAML mapping"):
        parse_card_text(b"- a\n- b\n", source="card.yaml")


# ------------------------------------------------------------------------------------------- --out


def _spawn_run(card: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "audits", "run", "--model", str(card), "--out", str(out), "--quiet", "--figures", "1", "--fail-on", "never", *extra]
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> int:
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return proc.returncode


def test_a_killed_rerun_leaves_the_earlier_audit_whole(tmp_path, tabular_bundle, image_bundle):
    out = tmp_path / "out"
    spec = tmp_path / "spec.yaml"
    spec.write_text("samples: 2\n")
    _finish(_spawn_run(tabular_bundle["card_path"], out, "--spec", str(spec)))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(before) == {"report.json", "report.html", "report.pdf"}
    # The rerun (another model) is killed once its new report.json exists and the renderings do not yet.
    rerun = _spawn_run(image_bundle["card_path"], out, "--spec", str(spec))
    deadline = time.monotonic() + 300
    staged = None
    while staged is None and time.monotonic() < deadline and rerun.poll() is None:
        staged = next((p for p in tmp_path.glob(".out.incoming-*/report.json")), None)
        time.sleep(0.01)
    assert staged is not None, "the rerun never staged a report"
    rerun.send_signal(signal.SIGKILL)
    rerun.communicate(timeout=30)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # The next run clears the killed run's staging folder and replaces the set as a whole.
    _finish(_spawn_run(image_bundle["card_path"], out, "--spec", str(spec), "--no-pdf"))
    assert sorted(p.name for p in out.iterdir()) == ["attributions", "report.html", "report.json"]  # the old PDF left with its set
    report = json.loads((out / "report.json").read_text())
    assert report["provenance"]["model_name"] == "tiny-cnn"
    assert report["report_id"] in (out / "report.html").read_text()
    assert not list(tmp_path.glob(".out.*"))


def test_other_files_in_the_out_folder_are_kept(tmp_path, tabular_bundle):
    from audits.cli import main

    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "report.pdf").write_text("an earlier audit's PDF")
    assert main(["run", "--model", str(tabular_bundle["card_path"]), "--out", str(out), "--quiet", "--figures", "0", "--no-pdf", "--fail-on", "never"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["attributions", "notes.txt", "report.html", "report.json"]  # the stale PDF went with its set
    assert (out / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------- records


def test_reports_record_who_when_where_and_with_what(tabular_bundle):
    import getpass
    import socket
    from datetime import datetime

    from audits.engine import run_audit
    from audits.spec import AuditSpec
    from models.loader import load_model

    card = load_card(tabular_bundle["card_path"])
    spec = AuditSpec(samples=2, probes=[{"name": "integrated_gradients"}])
    report = run_audit(load_model(card, device="cpu"), load_data(card), spec, user="alice@example.org")
    p = report.provenance
    assert p.user == "alice@example.org" and p.host == socket.gethostname() and p.tool_version
    started, ended = datetime.fromisoformat(p.started_at), datetime.fromisoformat(p.ended_at)
    assert started.tzinfo is not None and started <= ended
    assert run_audit(load_model(card, device="cpu"), load_data(card), spec).provenance.user == getpass.getuser()


def test_an_edited_report_is_refused_by_re_rendering(tmp_path, tabular_bundle):
    from audits.cli import main
    from audits.report import AuditReport

    out = tmp_path / "out"
    assert main(["run", "--model", str(tabular_bundle["card_path"]), "--out", str(out), "--quiet", "--figures", "0", "--no-pdf", "--no-html", "--fail-on", "never"]) == 0
    path = out / "report.json"
    report = AuditReport.load(path, verify=True)
    assert len(report.content_sha256) == 64
    assert main(["report", str(path), "--html", str(tmp_path / "ok.html")]) == 0
    raw = json.loads(path.read_text())
    raw["performance"]["accuracy"] = 0.99
    path.write_text(json.dumps(raw))
    with pytest.raises(ReportError, match="changed after it was written"):
        AuditReport.load(path, verify=True)
    proc = subprocess.run([sys.executable, "-m", "audits", "report", str(path)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "changed after it was written" in proc.stderr and "Traceback" not in proc.stderr
    # A report from before content hashes still re-renders, with a warning that edits cannot be detected.
    raw.pop("content_sha256")
    path.write_text(json.dumps(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "audits", "report", str(path), "--html", str(tmp_path / "old.html")], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0 and "records no content hash" in proc.stderr


def test_write_atomic_fsyncs_the_folder(tmp_path, monkeypatch):
    import stat

    from audits.report import write_atomic

    synced: list[bool] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd))[1])
    write_atomic(tmp_path / "r.json", b"{}")
    assert synced == [False, True]


def test_an_old_torch_is_refused_at_run_time(monkeypatch, tabular_bundle):
    import torch

    from audits.engine import check_torch_version, run_audit
    from audits.errors import AuditError

    check_torch_version("2.13.0+cpu")
    check_torch_version("2.10.0")
    with pytest.raises(AuditError, match=r"torch 2\.9\.1 is installed; audits needs torch 2\.10 or newer"):
        check_torch_version("2.9.1")
    monkeypatch.setattr(torch, "__version__", "2.5.0")
    with pytest.raises(AuditError, match="2.5.0"):
        run_audit(None, None)  # type: ignore[arg-type]  # refused before it looks at the model


# ------------------------------------------------------------------------------------------- many small groups


def test_many_small_random_levels_get_a_cardinality_warning_not_a_bare_gap():
    from tests.test_fairness_metrics import binary_case, run

    rates = {f"level{i:02d}": 0.3 for i in range(50)}  # 50 levels, the same selection rate in truth
    data, proba = binary_case(50 * 325, rates, seed=3)
    result = run(data, proba, n_boot=0, intersections=False)
    check = result.quality["chance_gaps"]["sex"]
    assert check["n_groups"] == 50 and check["metric"] == "selection_rate"
    assert check["gap"] > 0.05  # a gap that would read as a disparity on its own
    assert check["p_value"] > 0.05 and check["gap"] <= check["chance_p95"] * 1.1
    note = next(n for n in result.notes if n.startswith("Cardinality warning: sex has 50 groups"))
    assert "multiple comparisons" in note and "treat it as noise" in note
    # A real difference among as many groups is told apart from chance.
    rates = {**rates, **{f"level{i:02d}": 0.6 for i in range(5)}}
    data, proba = binary_case(50 * 325, rates, seed=3)
    result = run(data, proba, n_boot=0, intersections=False)
    assert result.quality["chance_gaps"]["sex"]["p_value"] < 0.01
    assert any("the gap exceeds what random groupings give" in n for n in result.notes)
    # Few groups: no warning.
    data, proba = binary_case(2000, {"a": 0.3, "b": 0.5}, seed=3)
    assert "chance_gaps" not in run(data, proba, n_boot=0).quality


def test_an_attributes_file_without_sensitive_columns_still_counts_its_rows(image_bundle):
    card = {**image_bundle["card"], "data": {**image_bundle["card"]["data"], "sensitive": []}}
    data = load_data(load_card(write_card(image_bundle["dir"], card)))
    assert len(data) == 40 and list(data.attributes.columns) == []
    pd.DataFrame({"site": ["A"] * 39}).to_csv(image_bundle["dir"] / "attrs.csv", index=False)
    with pytest.raises(DataError, match="39 rows"):
        load_data(load_card(image_bundle["card_path"]))


def test_a_symlinked_out_folder_stays_a_link(tmp_path, tabular_bundle):
    from audits.cli import main

    real = tmp_path / "real"
    real.mkdir()
    (real / "report.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert main(["run", "--model", str(tabular_bundle["card_path"]), "--out", str(link), "--quiet", "--figures", "0", "--no-pdf", "--no-html", "--fail-on", "never"]) == 0
    assert link.is_symlink() and json.loads((real / "report.json").read_text())["provenance"]["model_name"] == "tiny-mlp"
