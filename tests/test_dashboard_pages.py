"""The dashboard's pages, run headless with Streamlit's AppTest against the demo zoo.

Every page renders without an exception or an error box; the Inspect page runs attributions
on each zoo model and shows the prediction, the overlays and the contributions; the
Robustness, Fairness and Audit pages show stored audits (made here with ``run_audit`` on
small budgets); a bad upload gets a clear error and is not kept; switching pages computes
nothing again.
"""

from __future__ import annotations

import io
import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from models.registry import ZOO_DIR, zoo_names  # noqa: E402
from tests.dashboard_support import ADULT_SPEC, DIGITS_SPEC, store_audit  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PAGES = ["inspect_page", "robustness_page", "fairness_page", "concepts_page", "models_page", "audit_page"]
TIMEOUT = 120

pytestmark = pytest.mark.skipif(not {"digits-cnn", "adult-mlp"} <= set(zoo_names()), reason="the demo zoo is not built (python -m models.build_zoo)")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh audit store with one small audit of each zoo model; caches cleared."""
    root = tmp_path_factory.mktemp("audit-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDITS_STORE", str(root))
        from dashboard import cache

        cache.clear()
        stored = {name: store_audit(name, spec) for name, spec in (("digits-cnn", DIGITS_SPEC), ("adult-mlp", ADULT_SPEC))}
        yield {"root": root, "stored": stored}


def _problems(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]


def _app(model: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if model is not None and at.sidebar.selectbox[0].value != model:
        at.sidebar.selectbox[0].set_value(model).run()
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    return at


def stored_report(stored):
    from audits.report import AuditReport

    return AuditReport.load(stored.path)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


@pytest.mark.parametrize("model", ["digits-cnn", "adult-mlp"])
def test_every_page_renders_cleanly(store, model):
    at = _app(model)
    for page in PAGES:
        _page(at, page)
        assert not _problems(at), (page, _problems(at))
        assert at.title, page
    assert at.sidebar.selectbox[0].value == model
    sidebar_text = " ".join(str(m.value) for m in at.sidebar.metric)
    assert "cpu" in sidebar_text  # the device is shown


def test_inspect_grad_cam_on_digits(store):
    from dashboard import cache

    at = _page(_app("digits-cnn"), "inspect_page")
    at.multiselect(key="_w.inspect.methods").set_value(["grad_cam"]).run()
    assert not _problems(at), _problems(at)
    metrics = {m.label: m.value for m in at.metric}
    assert {"True class", "Predicted", "Confidence"} <= set(metrics)
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) >= 3  # input, class probabilities, the Grad-CAM overlay
    assert "Explains" in _captions(at) and "model call" in _captions(at)
    # Another sample: the attribution appears quickly (uncached: one probe call).
    before = cache.COMPUTED["attribution"]
    started = time.perf_counter()
    at.number_input(key="_w.inspect.sample").set_value(5).run()
    elapsed = time.perf_counter() - started
    assert cache.COMPUTED["attribution"] == before + 1
    ready = re.search(r"Attributions ready in ([0-9.]+) s", _captions(at))
    assert ready is not None and float(ready.group(1)) < 1.0, _captions(at)
    assert elapsed < 10, elapsed


def test_inspect_side_by_side_on_adult(store):
    at = _page(_app("adult-mlp"), "inspect_page")
    at.multiselect(key="_w.inspect.methods").set_value(["kernel_shap", "integrated_gradients"]).run()
    assert not _problems(at), _problems(at)
    assert len(at.get("plotly_chart")) >= 3  # probabilities + one contribution chart per method
    assert _captions(at).count("Explains") == 2
    # Filters: wrong predictions only; the chosen sample is then one the model gets wrong.
    at.radio(key="_w.inspect.correct").set_value("wrong").run()
    label = at.number_input(key="_w.inspect.sample").value
    assert not _problems(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["True class"] != metrics["Predicted"], (label, metrics)


def test_budgets_change_the_run(store):
    from dashboard import cache

    at = _page(_app("digits-cnn"), "inspect_page")
    at.multiselect(key="_w.inspect.methods").set_value(["integrated_gradients"]).run()
    before = cache.COMPUTED["attribution"]
    at.number_input(key="_w.budget.integrated_gradients.n_steps").set_value(8).run()
    assert not _problems(at)
    assert cache.COMPUTED["attribution"] == before + 1
    assert "Cost:" in _captions(at)


def test_switching_pages_recomputes_nothing(store):
    from dashboard import cache

    at = _app("digits-cnn")
    for page in PAGES:  # first visits load and compute what each page needs
        _page(at, page)
    counts = dict(cache.COMPUTED)
    for page in ["inspect_page", "models_page", "robustness_page", "inspect_page", "fairness_page", "audit_page", "inspect_page"]:
        _page(at, page)
        assert not _problems(at), (page, _problems(at))
    assert dict(cache.COMPUTED) == counts


def test_robustness_page_shows_results_and_gallery(store):
    at = _page(_app("digits-cnn"), "robustness_page")
    assert not _problems(at), _problems(at)
    headers = [s.value for s in at.subheader]
    assert "Corruption gallery" in headers
    assert any("FGSM" in h for h in headers) and any("corruption" in h.lower() for h in headers)
    assert len(at.get("plotly_chart")) >= 4  # gallery + attack curves + corruption curves


def test_fairness_page_shows_tables_heatmap_and_tradeoff(store):
    at = _page(_app("adult-mlp"), "fairness_page")
    assert not _problems(at), _problems(at)
    assert len(at.dataframe) >= 2
    intersection = at.selectbox(key="fairness.{}.0.cross".format(store["stored"]["adult-mlp"].report_id))
    assert " x " in intersection.value
    table = at.dataframe[0].value
    assert table["accuracy"].astype(str).str.contains(r"\[").any()  # values come with intervals
    assert any("PREVIEW" in w.value for w in at.warning)  # the mitigation trade-off is labelled a preview


@pytest.mark.parametrize("model", ["digits-cnn", "adult-mlp"])
def test_concepts_page_shows_tcav_and_the_gallery_with_their_meaning(store, model):
    at = _page(_app(model), "concepts_page")
    assert not _problems(at), _problems(at)
    headers = [s.value for s in at.subheader]
    assert "Concept tests (TCAV)" in headers
    text = " ".join(m.value for m in at.markdown)
    assert "What this means" in text and "What it does not mean" in text
    charts = len(at.get("plotly_chart"))
    if model == "digits-cnn":
        assert "Feature visualization" in headers
        assert charts >= 3  # TCAV heatmap, class gallery, channel gallery
    else:
        assert charts >= 1 and "Feature visualization" not in headers


def test_audit_page_runs_lists_and_compares(store, monkeypatch):
    from dashboard import jobs

    monkeypatch.setenv("AUDITS_WORKER_IDLE_S", "1")
    at = _page(_app("digits-cnn"), "audit_page")
    at.multiselect(key="_w.audit.probes.explanation").set_value(["grad_cam"])
    at.multiselect(key="_w.audit.probes.robustness").set_value([])
    at.multiselect(key="_w.audit.probes.fairness").set_value(["group_metrics"])
    at.number_input(key="_w.audit.max_rows").set_value(200)
    at.run()
    next(b for b in at.button if b.label == "Run audit").click().run()
    assert not _problems(at), _problems(at)
    assert any("queued as job" in s.value for s in at.success)  # it runs in a worker process
    deadline = time.monotonic() + TIMEOUT
    while jobs.queue().list(statuses=("queued", "running")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [j.status for j in jobs.queue().list()][:1] == ["completed"]
    at.run()
    listing = at.dataframe[0].value
    assert (listing["model"] == "digits-cnn").sum() == 2
    labels = [b.label for b in at.get("download_button")]
    assert "Download JSON" in labels
    for fmt in ("HTML", "PDF"):
        next(b for b in at.button if b.label == f"Prepare {fmt}").click().run()
        assert not _problems(at), _problems(at)
        assert f"Download {fmt}" in [b.label for b in at.get("download_button")]
    stored = next(iter((Path(store["root"]) / "reports" / "digits-cnn").glob("*.pdf")))
    assert stored.read_bytes()[:5] == b"%PDF-"  # the export is kept beside the report
    assert any(s.value.startswith("Compare two audits") for s in at.subheader)
    assert any(m.label == "Regressions" for m in at.metric)


def _zoo_bytes(name: str) -> bytes:
    return (ZOO_DIR / "digits-cnn" / name).read_bytes()


def _upload(at: AppTest, card: bytes, weights: tuple[str, bytes] | None, data: tuple[str, bytes] | None, attributes: tuple[str, bytes] | None = None) -> AppTest:
    uploaders = {u.label: u for u in at.get("file_uploader")}
    uploaders["Model card (card.yaml)"].set_value(("card.yaml", card, "application/x-yaml"))
    uploaders[next(k for k in uploaders if k.startswith("Weights"))].set_value(None if weights is None else (weights[0], weights[1], "application/octet-stream"))
    if data is not None:
        uploaders[next(k for k in uploaders if k.startswith("Evaluation data"))].set_value((data[0], data[1], "application/octet-stream"))
    if attributes is not None:
        uploaders[next(k for k in uploaders if k.startswith("Image attributes"))].set_value((attributes[0], attributes[1], "text/csv"))
    next(b for b in at.button if b.label == "Validate and register").click().run()
    return at


def _card(**changes) -> bytes:
    raw = yaml.safe_load(_zoo_bytes("card.yaml"))
    raw.update(changes)
    return yaml.safe_dump(raw).encode()


def test_bad_uploads_are_refused_with_a_clear_error(store):
    at = _page(_app("digits-cnn"), "models_page")
    models_dir = Path(store["root"]) / "models"
    # A pickle renamed .safetensors.
    buf = io.BytesIO()
    pickle.dump({"weights": np.zeros(3)}, buf)
    _upload(
        at,
        _card(name="evil-cnn"),
        ("weights.safetensors", buf.getvalue()),
        ("eval.npz", _zoo_bytes("eval.npz")),
        ("attrs.csv", _zoo_bytes("eval_attributes.csv")),
    )
    errors = [e.value for e in at.error]
    assert errors and "pickle" in errors[0].lower() and "Fix" in errors[0], errors
    assert not at.exception
    # A card with a typo in a field name.
    raw = yaml.safe_load(_zoo_bytes("card.yaml"))
    raw["name"] = "typo-cnn"
    raw["clas_names"] = raw.pop("class_names")
    _upload(
        at,
        yaml.safe_dump(raw).encode(),
        ("weights.safetensors", _zoo_bytes("weights.safetensors")),
        ("eval.npz", _zoo_bytes("eval.npz")),
        ("attrs.csv", _zoo_bytes("eval_attributes.csv")),
    )
    errors = [e.value for e in at.error]
    assert errors and "class_names" in errors[0] and "clas_names" in errors[0], errors
    # Data that does not fit the card (tabular CSV for an image model).
    _upload(at, _card(name="wrong-data"), ("weights.safetensors", _zoo_bytes("weights.safetensors")), ("eval.csv", b"a,b\n1,2\n"))
    assert [e.value for e in at.error], "a CSV for an image model must be refused"
    assert not models_dir.exists() or not any(models_dir.iterdir())  # nothing refused was kept
    assert not any((Path(store["root"]) / ".incoming").glob("*/*"))


def test_valid_upload_is_registered_and_inspectable(store):
    at = _page(_app("digits-cnn"), "models_page")
    assert [t.value for t in at.title] == ["Models"]
    _upload(
        at,
        _card(name="digits-upload"),
        ("weights.safetensors", _zoo_bytes("weights.safetensors")),
        ("eval.npz", _zoo_bytes("eval.npz")),
        ("attrs.csv", _zoo_bytes("eval_attributes.csv")),
    )
    assert not _problems(at), _problems(at)
    assert any("Registered digits-upload" in s.value for s in at.success)
    at.run()
    assert "digits-upload (uploaded)" in at.sidebar.selectbox[0].options
    at.sidebar.selectbox[0].set_value("digits-upload").run()
    _page(at, "inspect_page")
    assert not _problems(at), _problems(at)
    assert len(at.get("plotly_chart")) >= 3


def test_a_predictions_card_is_registered_without_weights_and_its_pages_render(store):
    """A compliance user uploads a vendor's decisions (card + table of scores, no model) and inspects them."""
    example = Path(__file__).resolve().parent.parent / "examples" / "predictions"
    card, table = (example / "card.yaml").read_bytes(), ("decisions.csv", (example / "decisions.csv").read_bytes())
    at = _page(_app("digits-cnn"), "models_page")
    # Weights with a predictions card, and a weights card without weights, are refused with the fix.
    _upload(at, card, ("weights.safetensors", _zoo_bytes("weights.safetensors")), table)
    assert "has no weights" in at.error[0].value and "Fix" in at.error[0].value
    _upload(at, _card(name="no-weights-cnn"), None, ("eval.npz", _zoo_bytes("eval.npz")))
    assert "needs its weights file" in at.error[0].value
    _upload(at, card, None, table)
    assert not _problems(at), _problems(at)
    assert any("Registered vendor-credit-score" in s.value for s in at.success)
    at.run()
    at.sidebar.selectbox[0].set_value("vendor-credit-score (uploaded)").run()
    for page in PAGES:
        _page(at, page)
        assert not _problems(at), (page, _problems(at))
    assert "tabular · predictions · 0 parameters" in _captions(at)
    # Inspect has no model to explain or re-score, says so, and still draws ROC/PR per group from the table's scores.
    at = _page(at, "inspect_page")
    notes = [i.value for i in at.info]
    assert any(n.startswith("No attribution method can run here:") for n in notes), notes
    assert "there is no model to score an edited row" in _captions(at)
    assert [s.value for s in at.subheader if "Decision threshold" in s.value]


def test_robustness_page_shows_every_robustness_probes_skips(store, tmp_path, monkeypatch):
    """The page's probe list comes from the registry: a skipped ``text_robustness`` (its real name) shows.

    Before, the page listed ``text_perturbations``, so text_robustness skips and failures never appeared.
    """
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path))
    spec = {"seed": 0, "samples": 2, "max_rows": 64, "probes": [{"name": "fgsm", "params": {"max_rows": 32}}, {"name": "text_robustness"}]}
    stored = store_audit("digits-cnn", spec)
    assert [s.name for s in stored_report(stored).skipped] == ["text_robustness"]
    at = _page(_app("digits-cnn"), "robustness_page")
    assert not _problems(at), _problems(at)
    assert "Skipped text_robustness: text_robustness applies to text models, not image" in _captions(at)
    at = _page(at, "fairness_page")
    assert "Skipped text_robustness" not in _captions(at)  # each page lists its own category only


def test_the_engine_never_imports_streamlit():
    """The boundary: audits/ and models/ compute; only dashboard/ knows Streamlit."""
    import ast

    offenders = []
    for folder in ("audits", "models"):
        for path in (APP.parent.parent / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                    offenders.append(str(path))
    assert not offenders, offenders


def test_inspect_trust_badges_beside_each_map(store):
    at = _page(_app("digits-cnn"), "inspect_page")
    at.multiselect(key="_w.inspect.methods").set_value(["saliency", "integrated_gradients"]).run()
    assert "Trust:" not in _captions(at)  # off by default: the page stays fast
    at.toggle(key="inspect.trust").set_value(True).run()
    assert not _problems(at), _problems(at)
    captions = _captions(at)
    assert captions.count("Trust: faithful") == 2 and "weight-sensitive" in captions, captions


def test_robustness_page_shows_the_autoattack_ensemble(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path))
    params = {"max_rows": 32, "epsilons": [0.0, 0.1], "steps": 5, "queries": 20}
    store_audit("digits-cnn", {"seed": 0, "samples": 2, "max_rows": 64, "probes": [{"name": "autoattack", "params": params}]})
    at = _page(_app("digits-cnn"), "robustness_page")
    assert not _problems(at), _problems(at)
    assert "AutoAttack ensemble (APGD-CE, APGD-T, Square)" in [s.value for s in at.subheader]
    assert any("only gradient-free broke" in m.value for m in at.markdown)  # the headline with the masking diagnostics
    assert len(at.get("plotly_chart")) >= 1
