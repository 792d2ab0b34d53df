"""The audit store (reports and validated uploads), the corruption gallery and the dashboard's
interactive figures, on tiny models (no zoo, no Streamlit)."""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import yaml

from audits.data import load_data
from audits.engine import run_audit
from audits.errors import AuditError, CardError, DataError
from audits.explain.base import AttributionResult
from audits.spec import parse_spec
from audits.store.legacy import AuditStore, verdict
from audits.uploads import UploadedFile, UploadError
from models.card import load_card
from models.loader import load_model


def _files(bundle: dict, card: dict | None = None) -> dict:
    folder = bundle["dir"]
    return {
        "card": UploadedFile("card.yaml", yaml.safe_dump(card or bundle["card"]).encode()),
        "weights": UploadedFile("weights.safetensors", (folder / "weights.safetensors").read_bytes()),
        "data": UploadedFile("eval.npz", (folder / "eval.npz").read_bytes()),
        "attributes": UploadedFile("attrs.csv", (folder / "attrs.csv").read_bytes()),
    }


@pytest.fixture
def small_report(image_bundle):
    card = load_card(image_bundle["card_path"])
    return run_audit(load_model(card), load_data(card), parse_spec({"samples": 2, "probes": [{"name": "saliency"}]}))


def test_save_list_open_latest(tmp_path, small_report):
    store = AuditStore(tmp_path / "store")
    assert store.list() == []
    first = store.save(small_report)
    assert first.path.parent == store.reports_dir / "tiny-cnn" and first.path.name.endswith(f"_{small_report.report_id}.json")
    assert first.summary["weights_sha256"] == small_report.provenance.weights_sha256 and first.verdict == "no policy"
    second = store.save(small_report.__class__(**{**small_report.__dict__, "report_id": "b" * 12, "created_at": "2099-01-01T00:00:00+00:00"}))
    assert [e.report_id for e in store.list()] == [second.report_id, first.report_id]  # newest first
    assert store.latest("tiny-cnn").report_id == second.report_id
    assert store.latest("tiny-cnn", weights_sha256="0" * 64) is None
    assert store.open(first.report_id).report_id == first.report_id
    with pytest.raises(AuditError, match="No stored audit"):
        store.get("missing")
    path = store.write_export(first, "html", b"<html></html>")
    assert path == first.export_path("html") and path.read_bytes() == b"<html></html>"
    assert len(store.list()) == 2  # exports and summaries are not listed as reports


def test_a_report_copied_in_by_hand_is_indexed(tmp_path, small_report):
    store = AuditStore(tmp_path)
    folder = store.reports_dir / "tiny-cnn"
    small_report.save(folder / f"20250101T000000Z_{small_report.report_id}.json")
    (folder / "notes.json").write_text("{}")  # not a report name: ignored
    [entry] = store.list()
    assert entry.report_id == small_report.report_id and entry.summary["accuracy"] == pytest.approx(small_report.performance.accuracy)


def test_store_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDITS_STORE", str(tmp_path / "elsewhere"))
    assert AuditStore().root == (tmp_path / "elsewhere").resolve()


def test_verdict_ranks_statuses():
    assert verdict([{"status": "pass"}, {"status": "warn"}])[0] == "warn"
    assert verdict([{"status": "pass"}, {"status": "fail"}, {"status": "warn"}]) == ("fail", {"pass": 1, "fail": 1, "warn": 1})
    assert verdict([])[0] == "no policy"
    assert verdict([{"status": "not_evaluated"}])[0] == "not_evaluated"


def test_register_a_valid_upload(tmp_path, image_bundle):
    store = AuditStore(tmp_path)
    files = _files(image_bundle)
    card_path = store.register_model(files["card"], files["weights"], files["data"], files["attributes"], device="cpu")
    assert card_path == store.models_dir / "tiny-cnn" / "card.yaml"
    assert store.model_card_paths() == {"tiny-cnn": card_path}
    card = load_card(card_path)
    assert load_model(card).weights_sha256 and len(load_data(card)) == 40
    with pytest.raises(UploadError, match="already registered"):
        store.register_model(files["card"], files["weights"], files["data"], files["attributes"])
    with pytest.raises(UploadError, match="already registered"):
        AuditStore(tmp_path / "other").register_model(files["card"], files["weights"], files["data"], files["attributes"], reserved_names=["tiny-cnn"])


def _refused(store: AuditStore, match: str, error=AuditError, **changes):
    with pytest.raises(error, match=match) as info:
        store.register_model(changes["card"], changes["weights"], changes["data"], changes.get("attributes"))
    assert info.value.fix  # every refusal says how to fix it
    assert not store.models_dir.exists() or not any(store.models_dir.iterdir())
    assert not any((store.root / ".incoming").glob("*/*"))


def test_uploads_are_refused_with_a_fix_and_not_kept(tmp_path, image_bundle):
    store = AuditStore(tmp_path)
    good = _files(image_bundle)
    buf = io.BytesIO()
    pickle.dump({"w": np.zeros(2)}, buf)
    _refused(store, "pickle", UploadError, **{**good, "weights": UploadedFile("weights.safetensors", buf.getvalue())})
    _refused(store, "pickle", UploadError, **{**good, "weights": UploadedFile("model.pkl", b"PK..")})
    torch_save = io.BytesIO()
    torch.save(image_bundle["net"].state_dict(), torch_save)
    state_dict_card = {**image_bundle["card"], "format": "pytorch_state_dict", "weights": "w.pt"}
    _refused(
        store,
        "uploads accept",
        UploadError,
        **{**good, "card": UploadedFile("card.yaml", yaml.safe_dump(state_dict_card).encode()), "weights": UploadedFile("w.pt", torch_save.getvalue())},
    )
    foreign = {**image_bundle["card"], "architecture": {"target": "torch.nn:Linear", "kwargs": {"in_features": 64, "out_features": 10}}}
    _refused(store, "not one of this project's", UploadError, **{**good, "card": UploadedFile("card.yaml", yaml.safe_dump(foreign).encode())})
    typo = {k: v for k, v in image_bundle["card"].items() if k != "class_names"} | {"clas_names": image_bundle["card"]["class_names"]}
    _refused(store, "clas_names", CardError, **{**good, "card": UploadedFile("card.yaml", yaml.safe_dump(typo).encode())})
    _refused(store, "not valid YAML", CardError, **{**good, "card": UploadedFile("card.yaml", b"name: [unclosed")})
    _refused(store, "not a YAML file", UploadError, **{**good, "card": UploadedFile("card.txt", b"name: x")})
    _refused(store, "is not a .npz", UploadError, **{**good, "data": UploadedFile("eval.csv", b"a\n1\n")})
    _refused(store, "weights", AuditError, **{**good, "weights": UploadedFile("weights.safetensors", b"not a safetensors file at all")})
    np_buf = io.BytesIO()
    np.savez(np_buf, x=np.full((40, 1, 8, 8), 7.0, dtype=np.float32), y=np.zeros(40, dtype=int))
    _refused(store, "value_range", DataError, **{**good, "data": UploadedFile("eval.npz", np_buf.getvalue())})
    _refused(store, "names an attributes file", UploadError, **{**good, "attributes": None})


def test_upload_size_limit_and_file_names(tmp_path, image_bundle):
    store = AuditStore(tmp_path)
    good = _files(image_bundle)
    with pytest.raises(UploadError, match="limited to 1 MB"):
        store.register_model(good["card"], UploadedFile("weights.safetensors", b"\0" * (2 << 20)), good["data"], good["attributes"], max_mb=1)
    # A path in an uploaded file name never escapes the model's folder.
    path = store.register_model(good["card"], UploadedFile("../../evil/weights.safetensors", good["weights"].content), good["data"], good["attributes"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["attrs.csv", "card.yaml", "eval.npz", "weights.safetensors"]
    assert not (tmp_path.parent / "evil").exists()


def test_corruption_gallery(image_bundle):
    from audits.gallery import corruption_gallery

    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    gallery = corruption_gallery(model, data, 3, corruptions=["gaussian_noise", "occlusion"], seed=1)
    assert gallery.images.shape == (2, 6, 1, 8, 8) and gallery.predictions.shape == (2, 6)
    np.testing.assert_allclose(gallery.images[:, 0], np.broadcast_to(data.x[3], (2, 1, 8, 8)))  # severity 0 is the clean image
    clean = model.predict_proba(data.x[3:4])[0]
    assert gallery.predictions[0, 0] == clean.argmax() and gallery.confidence[0, 0] == pytest.approx(clean.max(), abs=1e-6)
    assert not np.allclose(gallery.images[0, 5], gallery.images[0, 0])
    assert gallery.images.min() >= 0.0 and gallery.images.max() <= 1.0
    again = corruption_gallery(model, data, 3, corruptions=["gaussian_noise", "occlusion"], seed=1)
    np.testing.assert_array_equal(again.images, gallery.images)  # seeded
    assert set(gallery.first_flip) == {"gaussian_noise", "occlusion"}


def _attr(modality: str, shape: tuple, **extra) -> AttributionResult:
    rng = np.random.default_rng(0)
    return AttributionResult(
        method="integrated_gradients",
        modality=modality,
        output="logit",
        sample_indices=np.arange(shape[0]),
        targets=np.zeros(shape[0], dtype=np.int64),
        attributions=rng.normal(size=shape).astype(np.float32),
        **extra,
    )


def _texts(fig: go.Figure) -> str:
    layout = fig.layout
    parts = [layout.title.text or ""] + [
        str(getattr(layout, k).title.text or "") for k in layout if k.startswith(("xaxis", "yaxis")) and getattr(layout, k).title
    ]
    return " | ".join(parts)


def test_inspect_charts_are_labelled():
    from audits.render.plotly_backend import to_plotly
    from audits.render.static import to_image
    from audits.render.views.attribution import OVERLAY_COLORMAPS, attribution_overlay_chart, tabular_contribution_chart

    image = np.random.default_rng(1).random((1, 8, 8)).astype(np.float32)
    res = _attr("image", (2, 8, 8))
    for mode, kind in (("signed", "signed"), ("absolute", "magnitude")):
        for cmap in OVERLAY_COLORMAPS[mode].values():
            chart = attribution_overlay_chart(res, 1, image, (0.0, 1.0), opacity=0.4, mode=mode, colormap=cmap, title="IG")
            cell = chart.cells[0][0]
            assert chart.title == "IG" and chart.overlay_opacity == 0.4 and chart.colorbar == kind and chart.colorbar_label
            assert cell.overlay.min() >= (-1 if mode == "signed" else 0) and np.abs(cell.overlay).max() == pytest.approx(1.0)
            assert to_plotly(chart).layout.title.text == "IG" and to_image(chart)[:4] == b"\x89PNG"
    from audits.render.charts import cell_rgb

    hidden = attribution_overlay_chart(res, 1, image, opacity=0.0).cells[0][0]
    assert np.allclose(cell_rgb(hidden, 8, opacity=0.0, fade=True)[..., 0], image[0])  # no opacity: the input as it is
    full = cell_rgb(hidden, 8, opacity=1.0, fade=True, cmap="RdBu_r")
    strongest = np.unravel_index(np.abs(hidden.overlay).argmax(), hidden.overlay.shape)
    assert not np.allclose(full[strongest], image[0][strongest])  # the strongest attribution is drawn in full colour
    tab = _attr("tabular", (1, 4), feature_names=["f0", "f1", "f2", "f3"], base_values=np.array([0.5]), outputs=np.array([0.9]))
    tab = dataclasses.replace(tab, attributions=np.array([[0.3, -0.2, 0.05, 0.01]], dtype=np.float32))
    chart = tabular_contribution_chart(tab, 0, ["no", "yes"], {"f0": 1.5, "f1": "x"}, top_k=2)
    fig = to_plotly(chart)
    assert isinstance(fig.data[0], go.Waterfall) and "logit of 'no'" in _texts(fig) and "f0 = 1.5" in " ".join(fig.data[0].y)
    assert list(fig.data[0].measure) == ["absolute", "relative", "relative", "relative", "total"]  # two top features + 'other features'
    assert sum(chart.values[1:-1]) + chart.values[0] == pytest.approx(0.5 + 0.16, abs=1e-6) and to_image(chart)[:4] == b"\x89PNG"
    fig = to_plotly(tabular_contribution_chart(_attr("tabular", (1, 3), feature_names=["a", "b", "c"]), 0, ["no", "yes"]))
    assert isinstance(fig.data[0], go.Bar) and "contribution" in _texts(fig)


def test_intersection_heatmap_and_interval_table(tabular_bundle):
    from audits.render import tables
    from audits.render.plotly_backend import to_plotly
    from audits.render.views.fairness import intersection_heatmap_chart

    card = load_card(tabular_bundle["card_path"])
    report = run_audit(load_model(card), load_data(card), parse_spec({"probes": [{"name": "group_metrics", "params": {"n_boot": 20, "min_group_size": 5}}]}))
    result = report.fairness[0]
    crossed = [g for g in result.groupings if " x " in g]
    table = tables.interval_table(result.table(result.groupings[0]), list(result.metrics))
    assert table["accuracy"].str.contains(r"\[").any() and list(table.columns[:3]) == ["group", "n", "status"]
    if crossed:
        fig = to_plotly(intersection_heatmap_chart(result, crossed[0], "accuracy"))
        assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and "accuracy" in fig.layout.title.text
        assert any("n=" in cell for row in fig.data[0].text for cell in row)


def test_store_path_is_plain(tmp_path):
    assert isinstance(AuditStore(tmp_path).root, Path)
