"""Evaluation data larger than memory: the streamed audit (forced on small data with tiny chunks) against the in-memory one.

Counts are exact, the bootstrap from counts agrees with the row bootstrap, the probes' subset is seeded and
recorded, and the CSV line picker returns exactly the rows pandas reads. Speed and peak memory at 1M and 10M
rows are benchmark B15, not tests.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from audits import large_data
from audits.data import load_data
from audits.engine import run_audit
from audits.errors import DataError
from audits.fairness._bootstrap import GroupStats, binary_metrics, bootstrap_statistics, row_codes
from audits.fairness.group_metrics import _groupings, chance_gap
from audits.spec import parse_spec
from bench.bigdata import generate
from models.loader import load_model
from models.registry import resolve_card

SPEC = {"probes": [{"name": "group_metrics", "params": {"n_boot": 400}}]}


@pytest.fixture(scope="module")
def adult():
    card = resolve_card("adult-mlp")
    return card, load_model(card, device="cpu")


@pytest.fixture(scope="module")
def audits_pair(adult):
    """The same group-metrics audit of adult-mlp's 16,281 rows, in memory and streamed in chunks of 1,000 rows."""
    card, model = adult
    spec = parse_spec(SPEC)
    whole = run_audit(model, load_data(card), spec)
    streamed_data = load_data(card, stream_above_rows=0, subset_rows=2_000, chunk_rows=1_000)
    return whole, run_audit(model, streamed_data, spec), streamed_data


def test_small_files_load_whole_and_the_threshold_is_a_parameter(adult):
    card, _ = adult
    data = load_data(card)
    assert data.population is None and data.file_rows is None and len(data) == 16_281
    assert load_data(card, stream_above_rows=16_281).population is None  # not above: loaded whole
    streamed = load_data(card, stream_above_rows=16_280, subset_rows=500)
    assert streamed.population is not None and streamed.population.n_rows == 16_281 and len(streamed) == 500
    assert streamed.sha256 == data.sha256  # the file's hash, read in blocks


def test_streamed_performance_equals_the_in_memory_figures(audits_pair):
    whole, streamed, _ = audits_pair
    a, b = whole.performance, streamed.performance
    assert np.array_equal(a.confusion, b.confusion) and b.n == a.n == 16_281
    assert b.accuracy == a.accuracy and b.balanced_accuracy == pytest.approx(a.balanced_accuracy, abs=1e-15)
    assert b.ece == pytest.approx(a.ece, abs=1e-12) and b.mean_confidence == pytest.approx(a.mean_confidence, abs=1e-6)  # float32 sums in another order
    assert np.array_equal(a.reliability["count"], b.reliability["count"])
    pd.testing.assert_frame_equal(a.per_class, b.per_class)
    assert streamed.data_summary.class_counts == whole.data_summary.class_counts
    assert streamed.data_summary.group_sizes == whole.data_summary.group_sizes
    assert streamed.data_summary.n_rows == 16_281


def test_streamed_group_metrics_equal_the_in_memory_ones(audits_pair):
    whole, streamed, _ = audits_pair
    a, b = whole.fairness[0].groups, streamed.fairness[0].groups
    assert list(a["group"]) == list(b["group"]) and np.array_equal(a["n"], b["n"])  # counts exact
    for metric in ("selection_rate", "tpr", "fpr", "accuracy", "precision", "mean_score", "calibration_error"):
        assert np.allclose(a[metric], b[metric], atol=1e-9, equal_nan=True), metric  # point values from the same counts
    for metric in ("selection_rate", "accuracy", "mean_score", "calibration_error"):  # over every row of a group (n >= 1000)
        ok = (a["status"] == "ok") & (a["n"] >= 1_000)
        width = (a[f"{metric}_hi"] - a[f"{metric}_lo"])[ok]
        for end in ("lo", "hi"):  # intervals: two bootstraps, close within a fifth of the interval's width
            gap = (a[f"{metric}_{end}"] - b[f"{metric}_{end}"]).abs()[ok]
            assert (gap <= 0.2 * width + 1e-9).all(), (metric, end, gap.max(), width.min())
    ca, cb = whole.fairness[0].criteria, streamed.fairness[0].criteria
    assert np.allclose(ca["value"], cb["value"], atol=1e-9, equal_nan=True)
    assert streamed.fairness[0].quality["n_rows"] == 16_281


def test_the_subset_is_seeded_recorded_and_holds_the_files_rows(audits_pair, adult):
    _, streamed, data = audits_pair
    budgets = streamed.provenance.sample_budgets
    assert budgets["streamed_rows"] == 16_281 and budgets["subset_rows"] == 2_000 and budgets["chunk_rows"] == 1_000
    rows = streamed.data_summary.row_indices
    assert len(rows) == 2_000 and np.all(np.diff(rows) > 0) and rows.max() < 16_281
    card, _ = adult
    whole = load_data(card)
    assert np.array_equal(data.x, whole.x[rows]) and np.array_equal(data.y, whole.y[rows])
    pd.testing.assert_frame_equal(data.attributes, whole.attributes.iloc[rows].reset_index(drop=True))
    again = load_data(card, stream_above_rows=0, subset_rows=2_000, seed=0)
    other = load_data(card, stream_above_rows=0, subset_rows=2_000, seed=1)
    assert np.array_equal(again.file_rows, rows) and not np.array_equal(other.file_rows, rows)


def test_the_bootstrap_from_counts_agrees_with_the_row_bootstrap(audits_pair, adult):
    """A row bootstrap's atom counts are multinomial: both give the same spread of every group metric."""
    _, _, data = audits_pair
    card, model = adult
    whole = load_data(card)
    proba = model.predict_proba(whole.x)
    frame = whole.attributes.astype(str)
    cell, n_cells, groupings = _groupings(frame, [["sex"], ["race"], ["sex", "race"]])
    rows = bootstrap_statistics(row_codes(proba, whole.y, cell, n_cells, positive_class=1), 2000, np.random.default_rng(1))
    stats = large_data.PopulationStats(class_names=list(card.class_names), sensitive=list(card.data.sensitive), n_bins=10)
    for lo in range(0, len(whole), 5000):
        part = slice(lo, lo + 5000)
        stats.add(proba[part], whole.y[part], whole.attributes.iloc[part])
    stats.finish()
    atom_frame = stats.atoms[list(card.data.sensitive)].astype(str)
    atom_cell, atom_cells, atom_groupings = _groupings(atom_frame, [["sex"], ["race"], ["sex", "race"]])
    counts = large_data.bootstrap_from_counts(stats, atom_cell, atom_cells, 1, 2000, np.random.default_rng(2))
    for g_rows, g_counts in zip(groupings, atom_groupings, strict=True):
        assert g_rows.labels == g_counts.labels
        a: GroupStats = rows.grouped(g_rows.group_of_cell, len(g_rows.labels))
        b: GroupStats = counts.grouped(g_counts.group_of_cell, len(g_counts.labels))
        assert np.array_equal(a.outcome[0], b.outcome[0])  # the original sample: the same counts
        ma, mb = binary_metrics(a), binary_metrics(b)
        big = a.n[0] >= 500
        for metric in ("selection_rate", "tpr", "accuracy", "mean_score", "calibration_error"):
            sa, sb = np.nanstd(ma[metric][1:], axis=0)[big], np.nanstd(mb[metric][1:], axis=0)[big]
            assert np.allclose(sa, sb, rtol=0.12), (g_rows.name, metric, sa, sb)  # 2000 resamples: the std is known to ~3 %


def test_the_chance_gap_from_counts_matches_the_permutation_test(adult):
    """Shuffling group labels deals the hits out hypergeometrically: the same observed gap, a like p-value."""
    card, _ = adult
    rng = np.random.default_rng(0)
    n, k = 20_000, 25
    group = rng.integers(0, k, n)
    planted = group == 3
    pred = ((rng.random(n) < 0.3) | planted).astype(np.int64)  # group 3 is always selected
    proba = np.stack([1.0 - pred * 0.8 - 0.1, pred * 0.8 + 0.1], axis=1)
    y = rng.integers(0, 2, n)
    stats = large_data.PopulationStats(class_names=["no", "yes"], sensitive=["g"], n_bins=10)
    stats.add(proba, y, pd.DataFrame({"g": group.astype(str)}))
    stats.finish()
    atom_cell, _, groupings = _groupings(stats.atoms[["g"]].astype(str), [["g"]])
    labels = np.array(groupings[0].labels)
    eligible = np.ones(k, dtype=bool)
    by_counts = large_data.chance_gap_from_counts(stats, atom_cell, groupings[0].group_of_cell, eligible, 1, np.random.default_rng(1), 200)
    by_rows = chance_gap(proba, y, np.searchsorted(labels, group.astype(str)), eligible, 1, np.random.default_rng(1))
    assert by_counts["gap"] == pytest.approx(by_rows["gap"]) and by_counts["n_groups"] == by_rows["n_groups"] == k
    assert by_counts["p_value"] == by_rows["p_value"] == pytest.approx(1 / 201)
    assert by_counts["chance_p95"] == pytest.approx(by_rows["chance_p95"], rel=0.25)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_the_csv_line_picker_returns_exactly_the_rows_pandas_reads(tmp_path, monkeypatch, gz, trailing_newline):
    monkeypatch.setattr(large_data, "_BLOCK", 97)  # lines cross block boundaries
    frame = pd.DataFrame({"a": np.arange(500), "b": [f"level {i % 7}" for i in range(500)], "c": np.linspace(0, 1, 500)})
    text = frame.to_csv(index=False)
    text = text if trailing_newline else text.rstrip("\n")
    path = tmp_path / ("t.csv.gz" if gz else "t.csv")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    assert large_data.count_rows(path) == 500
    rows = np.array([0, 1, 2, 96, 97, 250, 498, 499])
    picked = large_data.read_csv_rows(path, rows, {"skipinitialspace": True}, ["a", "c"])
    pd.testing.assert_frame_equal(picked, pd.read_csv(path, usecols=["a", "c"]).iloc[rows].reset_index(drop=True))


def test_parquet_streams_by_batches_with_the_csv_figures(tmp_path, adult):
    card, model = adult
    csv, parquet = tmp_path / "big.csv", tmp_path / "big.parquet"
    generate(csv, 12_000, seed=3, chunk_rows=5_000)
    generate(parquet, 12_000, seed=3, chunk_rows=5_000)
    spec = parse_spec(SPEC)
    reports = [run_audit(model, load_data(card, p, stream_above_rows=10_000, subset_rows=1_000, chunk_rows=2_500), spec) for p in (csv, parquet)]
    assert np.array_equal(reports[0].performance.confusion, reports[1].performance.confusion)
    assert reports[0].performance.confusion.sum() == 12_000
    assert reports[0].data_summary.row_indices.tolist() == reports[1].data_summary.row_indices.tolist()
    pd.testing.assert_frame_equal(reports[0].fairness[0].groups, reports[1].fairness[0].groups)


def test_a_bad_value_past_the_subset_fails_naming_the_rows(tmp_path, adult):
    card, model = adult
    path = tmp_path / "bad.csv"
    generate(path, 6_000, seed=0)
    frame = pd.read_csv(path)
    frame.loc[5_500, "workclass"] = "Astronaut"
    frame.to_csv(path, index=False)
    data = load_data(card, path, stream_above_rows=1_000, subset_rows=10, chunk_rows=1_000, seed=0)
    assert 5_500 not in data.file_rows  # the subset is clean; the stream is not
    with pytest.raises(DataError, match=r"rows 5,001 to 6,000.*'workclass'.*Astronaut"):
        run_audit(model, data, parse_spec(SPEC))


def test_the_report_says_what_was_streamed_and_what_ran_on_the_subset(audits_pair):
    from audits.render.html import render_html

    whole, streamed, _ = audits_pair
    text = render_html(streamed)
    assert "16,281, streamed in chunks of 1,000 rows for performance and group metrics" in text
    assert "the other probes on a seeded random subset of 2,000 rows" in text
    assert "streamed in chunks" not in render_html(whole)


def test_a_line_too_long_is_refused_not_buffered(tmp_path):
    path = tmp_path / "long.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 10 + b"3," + b"9" * (large_data.MAX_LINE_BYTES + 10) + b"\n" + b"1,2\n" * 10)
    with pytest.raises(DataError, match="line longer than 1 MB"):
        large_data.read_csv_rows(path, np.array([0, 20]), {}, None)
    with pytest.raises(DataError, match="line longer than 1 MB"):
        list(large_data.iter_frames(path, ["a", "b"], 5, {}))


def test_audits_run_sets_the_streaming_threshold_and_the_subset_size(tmp_path, capsys):
    """``--stream-above`` and ``--subset-rows`` on ``audits run``: the report says what was streamed and
    how big the subset was; a count below 1 is a usage error naming the option."""
    import json

    from audits.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("seed: 0\nsamples: 2\nprobes:\n  - name: group_metrics\n    params: {n_boot: 50}\n")
    argv = ["run", "--model", "adult-mlp", "--spec", str(spec), "--quiet", "--no-pdf", "--no-html", "--fail-on", "never"]
    assert main([*argv, "--out", str(tmp_path / "streamed"), "--stream-above", "10_000", "--subset-rows", "3000"]) == 0
    report = json.loads((tmp_path / "streamed" / "report.json").read_text())
    budgets = report["provenance"]["sample_budgets"]
    assert budgets["streamed_rows"] == report["data_summary"]["n_rows"] == 16_281 and budgets["subset_rows"] == 3_000
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    assert "streamed_rows" not in json.loads((tmp_path / "whole" / "report.json").read_text())["provenance"]["sample_budgets"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path / "bad"), "--stream-above", "0"])
    assert exit_.value.code == 2 and "--stream-above: invalid row count value: '0'" in capsys.readouterr().err
