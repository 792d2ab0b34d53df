"""Charts for text robustness and identity-term shifts, with known answers (planted keyed models): the
view functions (shared by PDF, HTML and the dashboard), their place in the report sections, and the
dashboard's drawers (AppTest) showing them instead of raw tables."""

from __future__ import annotations

import json

import pytest

from audits.engine import build_context
from audits.fairness.identity_terms import IdentityTerms
from audits.render.blocks import Figure, RenderContext
from audits.render.plotly_backend import to_plotly_dict
from audits.render.registry import view_for
from audits.render.views.fairness import identity_term_chart, identity_term_flip_chart
from audits.render.views.robustness import text_robustness_chart, text_robustness_group_chart
from audits.robustness.text_perturbations import TextRobustness
from audits.serialization import to_jsonable
from tests.test_text_models import ID, bag_handle, text_data, tokenizer_dir  # noqa: F401 - the fixture is used by name
from tests.text_fixtures import KeyedBag


@pytest.fixture(scope="module")
def typo_result(tokenizer_dir):  # noqa: F811
    """Every word gets a typo: group a's 'idiot' texts all flip, group b's never do."""
    texts = ["you are an idiot"] * 6 + ["thanks for fixing the article"] * 6
    keyed = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    data = text_data(keyed, texts, labels=[1] * 6 + [0] * 6, groups=["a"] * 6 + ["b"] * 6)
    return TextRobustness(perturbations=["typos", "synonyms"], severities=[0.5, 1.0], max_rows=None).run(keyed, data, build_context(keyed, data))


@pytest.fixture(scope="module")
def identity_result(tokenizer_dir):  # noqa: F811
    model = bag_handle(KeyedBag([ID["muslim"]]), tokenizer_dir)
    data = text_data(model, ["my muslim friend says thanks", "my christian friend says thanks", "the cat sat on the mat"])
    return IdentityTerms(categories=["religion", "gender"]).run(model, data, build_context(model, data))


def test_text_robustness_group_chart_shows_each_groups_flip_rate_at_the_strongest_setting(typo_result):
    chart = text_robustness_group_chart(typo_result)
    assert [s.name for s in chart.series] == ["typos (strength 1)", "synonyms (strength 1)"]
    typos = chart.series[0]
    assert typos.x == ["group: a", "group: b"] and typos.y == [1.0, 0.0]
    assert typos.lo[0] < 1.0 == typos.hi[0] and typos.lo[1] == 0.0 < typos.hi[1]  # Wilson intervals of 6 of 6 and 0 of 6
    assert chart.categories == ["group: a", "group: b"] and chart.value_range == (0.0, 1.0)
    curve = text_robustness_chart(typo_result)
    assert curve.series[0].x == [0.0, 0.5, 1.0] and curve.series[0].y[0] == typo_result.clean_accuracy


def test_identity_term_flip_chart_ranks_the_planted_group_first(identity_result):
    chart = identity_term_flip_chart(identity_result)
    values = dict(zip(chart.categories, chart.series[0].y, strict=True))
    assert values["templates: religion/muslim"] == 1.0 == max(values.values())
    assert values["templates: religion/christian"] == pytest.approx(1 / 6)
    assert all(v == 0.0 for k, v in values.items() if "gender" in k)
    s = chart.series[0]
    assert all(lo <= y <= hi for lo, y, hi in zip(s.lo, s.y, s.hi, strict=True))
    shift = identity_term_chart(identity_result)
    assert max(shift.series[0].y) == shift.series[0].y[shift.categories.index("templates: religion/muslim")]


def test_both_charts_are_in_the_report_sections_and_draw_in_plotly(typo_result, identity_result):
    for result, titles in (
        (typo_result, ("Text perturbations", "Decisions that change per group")),
        (identity_result, ("Score shift", "Decisions that change when")),
    ):
        figures = [b for b in view_for(result)(result, RenderContext(report=None)) if isinstance(b, Figure)]  # these views read only the result
        assert [any(f.chart.title.startswith(t) for f in figures) for t in titles] == [True, True]
        for f in figures:
            assert to_plotly_dict(f.chart)["data"]


def test_the_dashboard_draws_the_charts_not_raw_tables(typo_result, identity_result, tmp_path):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from dashboard.result_drawers import DRAWERS

    assert type(typo_result) in DRAWERS and type(identity_result) in DRAWERS
    for name, result in (("typo", typo_result), ("identity", identity_result)):
        (tmp_path / f"{name}.json").write_text(json.dumps(to_jsonable(result)))

    def page(folder: str) -> None:
        import json
        from pathlib import Path

        from audits.serialization import from_jsonable
        from dashboard import result_view

        for name in ("typo", "identity"):
            result_view.draw_result(from_jsonable(json.loads(Path(folder, f"{name}.json").read_text())), None, name)

    at = AppTest.from_function(page, args=(str(tmp_path),), default_timeout=60).run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(titles) == 4
    assert any("Decisions that change per group" in t for t in titles) and any("identity term" in t for t in titles)


def test_the_shipped_lexicon_is_named_by_its_place_in_the_package_not_this_machines_path(identity_result):
    """Bug: an absolute local lexicon path was shown (the report named /home/.../audits/lexicons/...)."""
    from pathlib import Path

    import audits

    assert identity_result.lexicon == "audits/lexicons/identity_terms.yaml (shipped)"
    root = str(Path(audits.__file__).resolve().parent.parent)
    stored = json.dumps(to_jsonable(identity_result))
    assert root not in stored and "/lexicons/" not in stored.replace("audits/lexicons/", "")
    ctx = RenderContext(report=None)  # this view reads only the result
    shown = repr(view_for(identity_result)(identity_result, ctx))
    assert root not in shown
