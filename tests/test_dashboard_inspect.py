"""Inspect for daily use, run headless with Streamlit's AppTest against the demo zoo: deep links,
any row by index or filter, clickable thumbnails, what-if edits, ROC/PR per group, inline token
salience; and the bugs users met (each test fails on the code before its fix).

The values checked are recomputed here from the engine (the model's own probabilities, the
row's own label), never typed in.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from models.registry import ZOO_DIR, zoo_names  # noqa: E402
from tests.dashboard_support import DIGITS_SPEC, store_audit  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TIMEOUT = 240

pytestmark = pytest.mark.skipif(
    not {"digits-cnn", "digits-vit", "adult-mlp"} <= set(zoo_names()), reason="the demo zoo is not built (python -m models.build_zoo)"
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITS_STORE", str(root))
        from dashboard import cache

        cache.clear()
        yield root


def _problems(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]


def _open(**params) -> AppTest:
    """The app opened from a link carrying ``params`` as query parameters."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = str(v)
    return at.run()


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _zoo(name: str):
    from audits.data import load_data
    from models.card import load_card
    from models.loader import load_model

    card = load_card(ZOO_DIR / name / "card.yaml")
    return card, load_model(card, device="cpu"), load_data(card)


def test_deep_link_opens_model_sample_and_method(store):
    """A link to "digits-cnn, sample 212, Grad-CAM" opens exactly that, and the URL follows what is shown."""
    at = _open(model="digits-cnn", sample=212, method="grad_cam")
    assert not _problems(at), _problems(at)
    assert at.sidebar.selectbox[0].value == "digits-cnn"
    assert at.number_input(key="_w.inspect.sample").value == 212
    assert at.multiselect(key="_w.inspect.methods").value == ["grad_cam"]
    _, _, data = _zoo("digits-cnn")
    assert _metrics(at)["True class"] == data.class_names[int(data.y[212])]
    assert "Explains" in _captions(at)
    at.number_input(key="_w.inspect.sample").set_value(5).run()
    assert dict(at.query_params) == {"model": "digits-cnn", "sample": "5", "method": "grad_cam"}


def test_deep_link_to_another_model(store):
    at = _open(model="adult-mlp", sample=16000, method="integrated_gradients")
    assert not _problems(at), _problems(at)
    assert at.sidebar.selectbox[0].value == "adult-mlp"
    assert at.number_input(key="_w.inspect.sample").value == 16000


def test_vit_attention_maps_open(store):
    """Bug: "Probe 'attention_maps' has no parameter(s) ['target']" on digits-vit."""
    at = _open(model="digits-vit", sample=3, method="attention_maps")
    assert not _problems(at), _problems(at)
    assert at.multiselect(key="_w.inspect.methods").value == ["attention_maps"]
    assert "Attention weights" in _captions(at) and "Cost:" in _captions(at)
    assert len(at.get("plotly_chart")) >= 3  # input, probabilities, the attention map


def test_any_row_by_index_and_by_filter(store):
    """Bug: only the first 500 rows could be picked (adult has 16,281); now any row, and filters over columns."""
    _, model, data = _zoo("adult-mlp")
    at = _open(model="adult-mlp", method="integrated_gradients")
    at.number_input(key="_w.inspect.sample").set_value(16_280).run()
    assert not _problems(at), _problems(at)
    assert _metrics(at)["True class"] == data.class_names[int(data.y[16_280])]
    at.text_input(key="_w.inspect.query").set_value("age >= 60 and sex = Female and predicted != true").run()
    assert not _problems(at), _problems(at)
    predicted = model.predict_proba(data.x).argmax(axis=1)
    raw = data.raw
    want = np.flatnonzero((raw["age"].to_numpy() >= 60) & (raw["sex"].astype(str).to_numpy() == "Female") & (predicted != data.y))
    assert f"{len(want):,} of {len(data):,} rows match" in _captions(at)
    assert 16_280 not in want and at.number_input(key="_w.inspect.sample").value == int(want[0])  # the row gives way to the first match
    next(b for b in at.button if b.label == "Next").click().run()
    assert at.number_input(key="_w.inspect.sample").value == int(want[1])
    next(b for b in at.button if b.label == "Previous").click().run()
    next(b for b in at.button if b.label == "Previous").click().run()  # wraps around to the last match
    assert at.number_input(key="_w.inspect.sample").value == int(want[-1])
    at.text_input(key="_w.inspect.query").set_value("agee > 3").run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "agee" in errors[0] and "Fix" in errors[0], errors


def test_thumbnails_are_clickable(store):
    at = _open(model="digits-cnn", sample=0, method="grad_cam")
    at.radio(key="_w.inspect.correct").set_value("wrong").run()
    at.toggle(key="_w.inspect.browse").set_value(True).run()
    assert not _problems(at), _problems(at)
    thumbs = [b for b in at.button if (b.key or "").startswith("inspect.thumb.")]
    assert len(thumbs) >= 2 and len(at.get("image")) >= 2
    picked = int(thumbs[1].key.rsplit(".", 1)[1])
    thumbs[1].click().run()
    assert at.number_input(key="_w.inspect.sample").value == picked
    metrics = _metrics(at)
    assert metrics["True class"] != metrics["Predicted"]  # a wrong prediction, as filtered


def test_what_if_tabular_row(store):
    """Change two features of a row: the shown prediction is the model's on the edited row."""
    from audits.what_if import edited_row, predict_one

    card, model, data = _zoo("adult-mlp")
    at = _open(model="adult-mlp", sample=7, method="kernel_shap")
    assert "Nothing changed yet" in _captions(at)
    at.selectbox(key="inspect.whatif.7.education").set_value("Preschool").run()
    at.number_input(key="inspect.whatif.7.hours-per-week").set_value(5.0).run()
    assert not _problems(at), _problems(at)
    edited, index = edited_row(data, card, {"education": "Preschool", "hours-per-week": 5.0}, like=7)
    proba = predict_one(model, edited, index)
    pred = int(model.predict_proba(data.x[7:8]).argmax())
    metrics = _metrics(at)
    assert metrics["Predicted (edited)"] == data.class_names[int(proba.argmax())]
    assert metrics[f"P({data.class_names[pred]}) edited"] == f"{proba[pred]:.1%}"
    titles = [c for c in at.get("plotly_chart") if "(edited)" in str(c.proto.spec)]
    assert titles, "the edited row's attributions are drawn"


def test_roc_and_precision_recall_per_group(store):
    """At threshold 0.5 on a binary model the overall TPR is the recall of its argmax decisions."""
    _, model, data = _zoo("adult-mlp")
    at = _open(model="adult-mlp", sample=0, method="integrated_gradients")
    at.selectbox(key="inspect.roc.group").set_value("sex").run()
    assert not _problems(at), _problems(at)
    table = next(d.value for d in at.dataframe if "AUC" in d.value.columns)
    assert list(table["group"]) == ["all", "Female", "Male"]
    proba = model.predict_proba(data.x)
    positive = data.y == 1
    decided = proba[:, 1] >= 0.5
    overall = table.iloc[0]
    assert overall["tpr"] == pytest.approx((decided & positive).sum() / positive.sum(), abs=1e-4)
    assert overall["fpr"] == pytest.approx((decided & ~positive).sum() / (~positive).sum(), abs=1e-4)
    at.slider(key="inspect.roc.threshold").set_value(0.9).run()
    strict = next(d.value for d in at.dataframe if "AUC" in d.value.columns).iloc[0]
    assert strict["selection rate"] == pytest.approx((proba[:, 1] >= 0.9).mean(), abs=1e-4) and strict["selection rate"] < overall["selection rate"]


def test_default_audit_of_a_cnn_skips_nothing():
    """Bug: every CNN audit showed "Skipped and failed (1)" (attention maps defaulted for a CNN)."""
    from audits.probes import default_probe_names
    from audits.spec import AuditSpec

    _, cnn, cnn_data = _zoo("digits-cnn")
    _, vit, vit_data = _zoo("digits-vit")
    assert "attention_maps" in default_probe_names("image")
    assert "attention_maps" not in default_probe_names("image", cnn, cnn_data)
    assert "attention_maps" in default_probe_names("image", vit, vit_data)
    assert "attention_maps" not in [p.name for p in AuditSpec().probe_specs("image", cnn, cnn_data)]


def test_compare_seed_only_and_two_models():
    """Bug: a seed-only change was shown red as "got worse"; two different models compared silently."""
    import dataclasses

    from audits.diff import diff_reports
    from audits.report import AuditReport

    base = AuditReport.load(next(Path(__file__).parent.joinpath("data", "reports").glob("digits-cnn-*.json")))
    flip = next(i for i, f in enumerate(base.findings) if f.status == "pass" and f.interval is None)
    worse = [dataclasses.replace(f, status="fail") if i == flip else f for i, f in enumerate(base.findings)]
    reseeded = dataclasses.replace(base, report_id="b" * 12, findings=worse, provenance=dataclasses.replace(base.provenance, seed=base.provenance.seed + 1))
    other = dataclasses.replace(reseeded, provenance=dataclasses.replace(reseeded.provenance, model_name="another-model", seed=base.provenance.seed))

    def page(old, new):
        from audits.diff import diff_reports
        from dashboard.diff_view import draw_diff

        draw_diff(diff_reports(old, new))

    seed_diff = diff_reports(base, reseeded)
    assert seed_diff.seed_only and seed_diff.regressions  # the engine sees a worse status...
    at = AppTest.from_function(page, args=(base, reseeded)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]  # ...the page does not call it a regression
    assert any("Only the seed changed" in w.value for w in at.warning)
    assert {m.label: m.value for m in at.metric}["Regressions"] == "0"
    at = AppTest.from_function(page, args=(base, other)).run()
    assert any("two different models" in w.value for w in at.warning)


def test_findings_detail_is_shown_in_full(store):
    """Bug: the findings' detail column was cut off; now a static table shows each detail whole."""
    stored = store_audit("digits-cnn", DIGITS_SPEC)
    from audits.report import AuditReport

    report = AuditReport.load(stored.path)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/audit_page.py").run()
    assert not _problems(at), _problems(at)
    shown = at.table[0].value
    longest = max((f.detail for f in report.findings), key=len)
    assert longest in set(shown["detail"])


def test_no_audit_notice_goes_once_one_is_stored(store, tmp_path, monkeypatch):
    """Bug: "No stored audit of ... yet." stayed above "Audit ... stored"."""
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=600).run()
    at.switch_page("app_pages/robustness_page.py").run()
    assert any("No stored audit" in i.value for i in at.info)
    monkeypatch.setenv("AUDITS_WORKER_IDLE_S", "1")
    from dashboard import jobs

    next(b for b in at.button if b.label.startswith("Run the default audit")).click().run()
    assert not _problems(at), _problems(at)
    assert any("queued as job" in s.value for s in at.success)  # the audit runs in a worker process
    deadline = time.monotonic() + 600
    while jobs.queue().list(statuses=("queued", "running")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [j.status for j in jobs.queue().list()][:1] == ["completed"]
    at.run()
    assert not _problems(at), _problems(at)
    assert not any("No stored audit" in i.value for i in at.info)
    captions = _captions(at)
    assert "Skipped attention_maps" not in captions and not re.search(r"Skipped \w+: \w+ applies to", captions)


@pytest.mark.skipif("toxicity-minilm" not in zoo_names(), reason="the text model is not in the zoo")
def test_text_inline_salience_and_what_if(store):
    """Token salience inline in the sentence, one column per method; editing the text re-runs both."""
    from audits.what_if import edited_text, predict_one

    card, model, data = _zoo("toxicity-minilm")
    at = _open(model="toxicity-minilm", sample=1, method="layer_integrated_gradients,kernel_shap_text")
    assert not _problems(at), _problems(at)
    inline = [m.value for m in at.markdown if 'class="salience"' in m.value]
    assert len(inline) == 2  # one sentence per method, side by side
    words = re.findall(r">([^<]*)</span>", inline[0])
    assert " ".join(words).lower().replace(" ", "") == data.texts[1].lower().replace(" ", "")[: len("".join(words))]
    text = "You are a wonderful person and a good friend"
    at.text_area(key="inspect.whatif.1.text").set_value(text).run()
    assert not _problems(at), _problems(at)
    edited, index = edited_text(data, card, text, like=1)
    proba = predict_one(model, edited, index)
    assert _metrics(at)["Predicted (edited)"] == data.class_names[int(proba.argmax())]
    inline = [m.value for m in at.markdown if 'class="salience"' in m.value]
    assert len(inline) == 4 and [w.lower() for w in re.findall(r">([^<]*)</span>", inline[-1])] == text.lower().split()


@pytest.mark.skipif("toxicity-minilm" not in zoo_names(), reason="the text model is not in the zoo")
def test_text_attention_says_what_it_plots(store):
    """Bug: the text attention chart's axis said "contribution to logit"; attention rollout is a share
    of attention (0-1), no contribution to any class's logit."""
    at = _open(model="toxicity-minilm", sample=1, method="text_attention")
    assert not _problems(at), _problems(at)
    captions = _captions(at)
    assert "Attention rollout: the share of " in captions and "not a contribution to any class" in captions
    assert "(logit)" not in captions and "contribution to the logit" not in captions
    inline = [m.value for m in at.markdown if 'class="salience"' in m.value]
    values = [float(v) for v in re.findall(r'data-value="([^"]+)"', inline[0])]
    assert values and min(values) >= 0.0  # unsigned shares, drawn red only
    assert "attention rollout is unsigned" in captions


def test_robustness_gallery_opens_any_row_from_a_link(store):
    """The corruption gallery listed only the first 2,000 rows; now any row, also by link."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params["model"] = "digits-cnn"
    at.query_params["sample"] = "700"
    at.run()
    at.switch_page("app_pages/robustness_page.py").run()
    assert not _problems(at), _problems(at)
    assert at.number_input(key="_w.robustness.sample").value == 700
    assert any(c.value.startswith("#700 ·") for c in at.caption)
    assert dict(at.query_params).get("sample") == "700"
