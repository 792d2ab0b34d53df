"""The Error analysis page (AppTest) against stored audits of the zoo models with ``slice_discovery``:
the slices as the result found them (size, error rate, interval), and for an opened slice its
misclassified examples, each really in the slice and really misclassified."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from models.registry import zoo_names  # noqa: E402
from tests.dashboard_support import store_audit  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TIMEOUT = 120
SPECS = {
    "adult-mlp": {"seed": 0, "samples": 2, "max_rows": 3000, "probes": [{"name": "slice_discovery"}]},
    "digits-cnn": {"seed": 0, "samples": 2, "probes": [{"name": "slice_discovery", "params": {"min_size": 20}}]},
}

pytestmark = pytest.mark.skipif(not set(SPECS) <= set(zoo_names()), reason="the demo zoo is not built (python -m models.build_zoo)")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITS_STORE", str(root))
        mp.delenv("AUDITS_STORE_URL", raising=False)
        from dashboard import cache

        cache.clear()
        yield {name: store_audit(name, spec) for name, spec in SPECS.items()}


def _page(model: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if at.sidebar.selectbox[0].value != model:
        at.sidebar.selectbox[0].set_value(model).run()
    at.switch_page("app_pages/errors_page.py").run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    return at


def _result(entry):
    from audits.report import AuditReport
    from audits.results.discovery import SliceDiscoveryResult

    report = AuditReport.load(entry.path)
    return next(r for r in report.fairness if isinstance(r, SliceDiscoveryResult))


def test_tabular_slices_and_their_misclassified_rows(stored):
    result = _result(stored["adult-mlp"])
    assert len(result.flagged) > 0  # the adult model errs more in some slices (a known property of the data)
    at = _page("adult-mlp")
    assert any(t.value == "Error analysis" for t in at.title)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Overall error rate"] == f"{result.overall_error:.1%}" and metrics["Significantly worse"] == f"{len(result.flagged):,}"
    table = at.dataframe[0].value
    assert list(table["slice"]) == list(result.slices["slice"])
    assert (table["errors"] / table["size"]).round(12).tolist() == result.slices["error_rate"].round(12).tolist()
    assert len(at.get("plotly_chart")) == 1  # the flagged slices with intervals

    # Open each flagged slice: every example row is in it (category or numeric bin) and misclassified.
    for name in result.flagged["slice"]:
        at.selectbox(key="_w.errors.slice").set_value(name).run()
        rows = at.dataframe[1].value
        assert len(rows) > 0 and (rows["true"] != rows["predicted"]).all(), name
        for column, value in (p.split("=", 1) for p in name.split(" & ")):
            assert _in_slice(rows[column], value).all(), (name, column, rows[column].tolist())


def _in_slice(values, label: str):
    """A slice value: a category, or a numeric bin like (33.0, 41.0] or [17, 25)."""
    if label[:1] in "([" and label[-1:] in ")]" and ", " in label:
        lo, hi = (float(b) for b in label[1:-1].split(", "))
        x = values.astype(float)
        above = x >= lo if label[0] == "[" else x > lo
        below = x <= hi if label[-1] == "]" else x < hi
        return above & below
    return values.astype(str) == label


def test_image_slices_show_misclassified_thumbnails(stored):
    result = _result(stored["digits-cnn"])
    at = _page("digits-cnn")
    assert list(at.dataframe[0].value["slice"]) == list(result.slices["slice"])
    worst = result.slices.iloc[0]
    at.selectbox(key="_w.errors.slice").set_value(worst["slice"]).run()
    if worst["errors"]:
        spec = at.get("plotly_chart")[-1].proto.spec
        assert "Misclassified examples" in spec and "predicted" in spec


def test_a_streamed_audit_shows_its_examples_by_their_row_in_the_file(tmp_path, monkeypatch):
    """A large file is audited (and held by the dashboard) as a seeded subset: the examples are found
    by their row in the file, not refused as 'the data changed'; examples outside the dashboard's
    subset are said to be, and the rest shown."""
    import pandas as pd

    from audits import large_data
    from audits.data import load_data
    from audits.engine import run_audit
    from audits.policy import apply_policy
    from audits.spec import parse_spec
    from dashboard import cache
    from dashboard.stored_runs import RunStore
    from models.card import load_card
    from models.registry import ZOO_DIR

    monkeypatch.setattr(large_data, "STREAM_ABOVE_ROWS", 2_000)
    monkeypatch.setattr(large_data, "SUBSET_ROWS", 5_000)
    monkeypatch.setattr(large_data, "CHUNK_ROWS", 4_000)
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path))
    monkeypatch.delenv("AUDITS_STORE_URL", raising=False)
    cache.clear()
    card = load_card(ZOO_DIR / "adult-mlp" / "card.yaml")
    whole = pd.read_csv(card.resolve(card.data.path), skipinitialspace=True)
    from models.loader import load_model

    model = load_model(card)
    for subset_seed in (0, 1):  # the dashboard holds the seed-0 subset; a seed-1 audit overlaps it in part
        data = load_data(card, seed=subset_seed)
        assert data.population is not None and len(data) == 5_000
        report = apply_policy(run_audit(model, data, parse_spec({"seed": 0, "samples": 2, "probes": [{"name": "slice_discovery"}]})))
        RunStore.at(None).save(report)
        at = _page("adult-mlp")
        result = next(r for r in report.fairness if r.method == "slice_discovery")
        name = result.slices.loc[result.slices["errors"] > 0, "slice"].iloc[0]
        at.selectbox(key="_w.errors.slice").set_value(name).run()
        assert not any("changed since this audit" in w.value for w in at.warning)
        examples = [int(i) for i in str(result.slices.set_index("slice").loc[name, "examples"]).split(",")]
        file_rows = [int(data.file_rows[i]) for i in examples]
        if subset_seed == 0:
            shown = at.dataframe[1].value
            assert shown["row"].tolist() == file_rows
        else:
            held = set(load_data(card).file_rows.tolist())
            inside = [r for r in file_rows if r in held]
            assert len(inside) < len(file_rows)  # the case this branch is for
            if inside:
                shown = at.dataframe[1].value
                assert shown["row"].tolist() == inside
                assert any("lie outside" in c.value for c in at.caption)
            else:
                assert any("lie outside" in i.value for i in at.info)
                continue
        # Each shown row is the file's row: its values are the file's, and the model got it wrong.
        assert (shown["true"] != shown["predicted"]).all()
        for column in ("age", "education", "hours-per-week"):
            if column in shown.columns:
                assert shown[column].astype(str).tolist() == whole.loc[shown["row"], column].astype(str).tolist(), column
