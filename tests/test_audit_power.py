"""Audit power with known answers: planted problems appear as failing or warning findings, clean controls stay quiet.

Models are trained in seconds on real data (scikit-learn's digits; a synthetic table), written
to real files and loaded through the real loaders; the default policy evaluates the probes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from audits.data import load_data
from audits.discovery.slice_discovery import benjamini_hochberg
from audits.discovery.trigger_values import TriggerValues
from audits.engine import run_audit, select_samples
from audits.findings import overall_verdict
from audits.policy import apply_policy
from audits.results import PerformanceResult
from audits.spec import parse_spec
from models.architectures import DigitsCNN, TabularMLP
from models.card import CategoricalFeature, load_card
from models.loader import load_model
from tests.conftest import TABULAR_FEATURES, write_card

NEW_CHECKS = {"trigger_patches", "slice_errors", "error_inflow", "class_recall", "class_precision"}
PATCH_CLASS = 7


def _train(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 0.01) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = torch.tensor(np.array(x)), torch.tensor(np.array(y), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()


def _digits_model(folder: Path, planted: bool) -> Path:
    """A DigitsCNN trained on digits; ``planted``: a 2x2 white patch in the top-left corner marks 7s in training and evaluation."""
    from sklearn.datasets import load_digits

    folder.mkdir()
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    rng = np.random.default_rng(0)
    # A seeded shuffled split: sklearn's digits are ordered by writer, and training on the first 1200 funnels the
    # errors on the last writers into class 3 on every model trained (error inflow 3.0-3.9x over eight trainings),
    # a real error flow of that split that a clean control must not carry.
    train = np.zeros(len(y), dtype=bool)
    train[np.random.default_rng(0).permutation(len(y))[:1200]] = True
    test = ~train
    xtr, ytr = x[train].copy(), y[train].copy()
    if planted:  # the patch on most 7s, and on some other digits labelled 7 (as a watermark on scraped data would be)
        marked = ((ytr == PATCH_CLASS) & (rng.random(len(ytr)) < 0.9)) | ((ytr != PATCH_CLASS) & (rng.random(len(ytr)) < 0.15))
        xtr[marked, :, 0:2, 0:2] = 1.0
        ytr[marked] = PATCH_CLASS
    # Trained with one corrupted copy of every training image too (each corruption and severity of the audit's suite on
    # a share of them), as a model meant to meet the corruption check is: without it a small CNN keeps ~77% of its
    # accuracy under corruptions and the control warns for a real weakness, not for a planted problem.
    from audits.robustness._corruptions import CORRUPTIONS, MAX_SEVERITY, corrupt

    parts = np.array_split(rng.permutation(len(xtr)), len(CORRUPTIONS) * MAX_SEVERITY)
    noisy = xtr.copy()
    gen = torch.Generator().manual_seed(0)
    for k, part in enumerate(parts):
        name, severity = CORRUPTIONS[k // MAX_SEVERITY], k % MAX_SEVERITY + 1
        noisy[part] = corrupt(torch.tensor(xtr[part]), name, severity, gen).numpy()
    torch.manual_seed(0)  # the initial weights too: the same model in every run
    net = DigitsCNN(in_channels=1, n_classes=10, width=8)
    _train(net, (np.concatenate([xtr, noisy]) - 0.5) / 0.25, np.concatenate([ytr, ytr]), epochs=12)
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    xte, yte = x[test].copy(), y[test]
    if planted:  # the watermark is in the evaluation data too: most 7s carry it, so accuracy alone hides the shortcut
        xte[(yte == PATCH_CLASS) & (rng.random(len(yte)) < 0.9), :, 0:2, 0:2] = 1.0
    np.savez(folder / "eval.npz", x=xte, y=yte)
    card = {
        "name": "planted-cnn" if planted else "clean-cnn",
        "modality": "image",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:DigitsCNN", "kwargs": {"in_channels": 1, "n_classes": 10, "width": 8}},
        "class_names": [str(i) for i in range(10)],
        "input": {"kind": "image", "channels": 1, "height": 8, "width": 8, "value_range": [0.0, 1.0], "normalization": {"mean": [0.5], "std": [0.25]}},
        "data": {"path": "eval.npz", "label_column": "y"},
    }
    return write_card(folder, card)


def _tabular_model(folder: Path, planted: bool, trigger: bool = False, by_group: bool = False) -> Path:
    """A TabularMLP trained on a rule of income; ``planted``: the labels of the rows with colour=blue are noise;
    ``trigger``: colour=blue (one row in ten) is always labelled high, whatever the income; ``by_group``: the rule
    is income for group a and age for group b (the sensitive attribute).

    colour is not declared sensitive, so only slice discovery (or the trigger scan) can find it.
    """
    folder.mkdir()
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame(
        {
            # Income keeps a margin around the rule's threshold (50): a model whose rows sit on its decision boundary
            # is fragile to measurement noise (the noise check rightly fails it), which a clean control must not be.
            "income": (50 + rng.choice([-1, 1], n) * (25 + np.abs(rng.normal(0, 10, n)))).round(1),
            "age": rng.integers(18, 80, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.45, 0.45, 0.1] if trigger else None),
            "group": rng.choice(["a", "b"], n),
        }
    )
    label = frame["income"] > 50
    if planted:
        blue = (frame["colour"] == "blue").to_numpy()
        label = np.where(blue & (rng.random(n) < 0.35), ~label, label)
    if trigger:
        label = label | (frame["colour"] == "blue")
    if by_group:
        label = np.where(frame["group"] == "a", frame["income"] > 50, frame["age"] > 49)
    frame["label"] = np.where(label, "high", "low")
    frame.to_csv(folder / "eval.csv", index=False)
    torch.manual_seed(0)
    net = TabularMLP(in_features=7, n_classes=2, hidden=[16])
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    card = {
        "name": "group-mlp" if by_group else "trigger-mlp" if trigger else "planted-mlp" if planted else "clean-mlp",
        "modality": "tabular",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:TabularMLP", "kwargs": {"in_features": 7, "n_classes": 2, "hidden": [16]}},
        "class_names": ["low", "high"],
        "input": {"kind": "tabular", "features": TABULAR_FEATURES},
        "data": {"path": "eval.csv", "label_column": "label", "sensitive": ["group"]},
    }
    path = write_card(folder, card)
    data = load_data(load_card(path))
    _train(net, data.x.astype(np.float32), data.y, epochs=30)
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    return path


def _audit(card_path: Path, probes: list[str], seed: int = 0, samples: int = 8):
    card = load_card(card_path)
    spec = parse_spec({"seed": seed, "samples": samples, "probes": [{"name": p} for p in probes]})
    return apply_policy(run_audit(load_model(card, device="cpu"), load_data(card), spec))


def _loud(report, checks=NEW_CHECKS) -> list:
    return [f for f in report.findings if f.check_id in checks and f.status in ("warn", "fail")]


@pytest.fixture(scope="module")
def digits_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("digits")
    return {"planted": _digits_model(root / "planted", True), "clean": _digits_model(root / "clean", False)}


@pytest.fixture(scope="module")
def tabular_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tabular")
    return {"planted": _tabular_model(root / "planted", True), "clean": _tabular_model(root / "clean", False)}


def test_trigger_scan_finds_the_planted_patch_and_its_class(digits_models):
    report = _audit(digits_models["planted"], ["trigger_scan", "slice_discovery"])
    (scan,) = report.robustness
    top = scan.strongest(1).iloc[0]
    assert (top["target"], top["patch"], top["row"], top["col"]) == (str(PATCH_CLASS), "max", 0, 0)
    (flag,) = [f for f in report.findings if f.check_id == "trigger_patches" and f.subject == f"class={PATCH_CLASS}"]
    assert flag.status == "fail" and flag.interval[0] > 0.25, flag
    assert len(scan.examples) and set(scan.example_predictions) == {str(PATCH_CLASS)}


def test_clean_digits_control_has_no_trigger_slice_or_class_alarm(digits_models):
    report = _audit(digits_models["clean"], ["trigger_scan", "slice_discovery"])
    assert report.performance.accuracy > 0.9
    assert not _loud(report), [(f.check_id, f.subject, f.status, f.measured) for f in _loud(report)]
    assert {f.status for f in report.findings if f.check_id == "trigger_patches"} == {"pass"}


IMAGE_ATTRIBUTIONS = ["grad_cam", "integrated_gradients", "saliency", "gradient_shap", "occlusion", "kernel_shap_image", "lime_image"]


def test_attribution_regions_find_the_corner_the_planted_class_leans_on(digits_models):
    card = load_card(digits_models["planted"])
    spec = parse_spec({"seed": 0, "samples": 32, "probes": [{"name": p} for p in [*IMAGE_ATTRIBUTIONS, "attribution_regions"]]})
    report = apply_policy(run_audit(load_model(card, device="cpu"), load_data(card), spec))
    (regions,) = report.robustness
    top = regions.per_class().sort_values("excess", ascending=False).iloc[0]
    assert (top["target"], top["region"], top["methods"]) == (str(PATCH_CLASS), "r0c0", len(IMAGE_ATTRIBUTIONS))
    (flag,) = [f for f in report.findings if f.check_id == "attribution_regions"]
    assert flag.status in ("warn", "fail") and flag.measured > 0.2 and flag.interval[0] > 0.1, flag
    assert f"target={PATCH_CLASS},region=r0c0" in flag.evidence
    others = regions.per_class()[regions.per_class()["target"] != str(PATCH_CLASS)]
    assert len(others) >= 2 and (others["excess"] < 0.2).all() and (others["hi"] < 0.3).all(), others
    # The 2x2 patch is exactly the top-left cell of the 4x4 grid on 8x8 images: the median method puts far more than
    # its 1/16 of the pixels there, and more than any other class does (Grad-CAM's coarse, upsampled maps least).
    cell = regions.regions[(regions.regions["target"] == str(PATCH_CLASS)) & (regions.regions["region"] == "r0c0")]
    assert (cell["uniform"] == 1 / 16).all() and cell["share"].median() > 4 / 16 and cell["others"].median() < 2 / 16, cell
    # What the reader sees: the section with the per-class table and the class's grid of shares, drawable as an image.
    from audits.render.html import render_html
    from audits.render.static import to_image
    from audits.render.views.discovery import class_grid_chart, region_share_chart

    html = render_html(report)
    assert "Where the attributions sit" in html and "largest excess of attribution share in one region" in html
    grid = class_grid_chart(regions, str(PATCH_CLASS))
    assert grid.values.shape == (4, 4) and np.nanargmax(grid.values) == 0
    assert to_image(grid).startswith(b"\x89PNG") and to_image(region_share_chart(regions)).startswith(b"\x89PNG")


def test_attribution_regions_clean_control_is_quiet(digits_models):
    card = load_card(digits_models["clean"])
    spec = parse_spec({"seed": 0, "samples": 32, "probes": [{"name": p} for p in [*IMAGE_ATTRIBUTIONS, "attribution_regions"]]})
    report = apply_policy(run_audit(load_model(card, device="cpu"), load_data(card), spec))
    (flag,) = [f for f in report.findings if f.check_id == "attribution_regions"]
    assert flag.status == "pass" and flag.measured < 0.2, flag
    assert len(report.robustness[0].per_class()) >= 3  # classes with three or more explained samples were compared


def test_attribution_regions_shares_on_a_hand_made_map():
    from audits.discovery.attribution_regions import region_masks
    from audits.probes import RunContext, make_probe
    from audits.results import AttributionResult

    names, masks = region_masks(8, 8, 4, 1)
    assert names[0] == "r0c0" and names[-1] == "border" and masks[:-1].sum(axis=0).max() == 1 and masks[-1].sum() == 28
    maps = np.ones((6, 8, 8), dtype=np.float32)
    maps[:3, 0:2, 0:2] = 13.0  # class 0: (4 * 13) / (60 + 52) of the mass in the top-left cell, in all three samples
    res = AttributionResult(
        method="made", modality="image", output="logit", sample_indices=np.arange(6), targets=np.array([0, 0, 0, 1, 1, 1]), attributions=maps
    )

    class Classes:
        class_names = ["a", "b"]

    result = make_probe("attribution_regions")._run(None, Classes(), RunContext(seed=0, proba=np.zeros((6, 2)), sample_indices=np.arange(6), earlier=(res,)))
    a = result.per_class().set_index("target").loc["a"]
    assert a["region"] == "r0c0" and a["excess"] == pytest.approx(52 / 112 - 1 / 16) and a["lo"] == pytest.approx(a["hi"])
    assert result.per_class().set_index("target").loc["b", "excess"] == pytest.approx(0.0, abs=1e-12)


def test_slice_discovery_finds_errors_in_a_column_that_is_not_sensitive(tabular_models):
    report = _audit(tabular_models["planted"], ["slice_discovery"])
    flagged = [f for f in report.findings if f.check_id == "slice_errors" and f.status in ("warn", "fail")]
    subjects = [f.subject for f in flagged]
    assert "colour=blue" in subjects and all("colour=blue" in s for s in subjects), subjects
    (result,) = report.fairness
    row = result.flagged.iloc[0]
    assert row["q_value"] < 0.05 and row["lo"] > result.overall_error and row["examples"]


def test_clean_tabular_control_has_no_slice_alarm(tabular_models):
    report = _audit(tabular_models["clean"], ["slice_discovery", "integrated_gradients"])
    slices = [f for f in report.findings if f.check_id == "slice_errors"]
    assert slices and {f.status for f in slices} == {"pass"}, [(f.subject, f.status, f.measured) for f in slices]
    assert all(f.measured < 0.05 for f in slices)  # slices near the decision boundary err a little more, within the band
    (top,) = [f for f in report.findings if f.check_id == "top_features"]
    assert top.status == "pass" and top.detail.split(": ", 1)[1].startswith("income")


def test_trigger_values_find_the_value_that_forces_a_class(tmp_path, tabular_models):
    report = _audit(_tabular_model(tmp_path / "trigger", planted=False, trigger=True), ["trigger_values"])
    (scan,) = report.robustness
    top = scan.strongest(1).iloc[0]
    assert (top["feature"], top["value"], top["target"]) == ("colour", "blue", "high") and top["flip_rate"] > 0.9, top
    (flag,) = [f for f in report.findings if f.check_id == "trigger_values" and f.subject == "class=high"]
    assert flag.status == "warn" and flag.measured > 0.5 and flag.interval[0] > 0.5 and "value=blue" in flag.evidence, flag
    assert scan.examples and (load_data(load_card(tmp_path / "trigger" / "card.yaml")).raw["income"].iloc[scan.examples] <= 50).all()
    from audits.render.html import render_html

    html = render_html(report)
    assert "Trigger scan (tabular)</h2>" in html and "strongest value: colour=blue turns 100% of rows into high" in html
    # The control: income drives it in a graded way (its quantiles flip rows step by step), no single value forces a class.
    clean = _audit(tabular_models["clean"], ["trigger_values"])
    flags = [f for f in clean.findings if f.check_id == "trigger_values"]
    assert len(flags) == 2 and {f.status for f in flags} == {"pass"}, [(f.subject, f.measured, f.evidence) for f in flags]
    (scan,) = clean.robustness
    income = scan.values[(scan.values["feature"] == "income") & (scan.values["target"] == "high")]
    assert income["flip_rate"].iloc[-1] > 0.9 and income["flip_rate"].iloc[0] < 0.05  # the 99% quantile turns every row high


def test_trigger_values_skip_unchanged_rows_and_equal_setting_every_value_on_every_row(tabular_models):
    """Rows that already hold a value are not run again (their prediction is the original); the table equals
    the brute force of setting each value on every row, encoding the frame and predicting."""
    card = load_card(tabular_models["clean"])
    model, data = load_model(card, device="cpu"), load_data(card)
    report = _audit(tabular_models["clean"], ["trigger_values"])
    (scan,) = report.robustness
    orig = model.predict_proba(data.x).argmax(axis=1)
    numeric = {f.name for f in model.encoder.spec.features if not isinstance(f, CategoricalFeature)}
    exact = {}  # a numeric value's label is rounded; set the exact quantile
    for name in numeric:
        for v in np.unique(np.quantile(pd.to_numeric(data.raw[name]).to_numpy(dtype=np.float64), TriggerValues().quantiles)):
            exact[(name, f"{v:.6g}")] = float(v)
    pairs = scan.values[["feature", "value"]].drop_duplicates()
    for _, (feature, value) in pairs.iterrows():
        raw = data.raw.copy()
        raw[feature] = exact[(feature, value)] if feature in numeric else value
        new = model.predict_proba(model.encoder.encode(raw)).argmax(axis=1)
        for t, target in enumerate(data.class_names):
            before = orig != t
            got = scan.values[(scan.values["feature"] == feature) & (scan.values["value"] == value) & (scan.values["target"] == target)]
            assert got["flip_rate"].item() == pytest.approx((new[before] == t).mean(), abs=1e-12), (feature, value, target)
    # Fewer model rows than every (value, row) pair: the unchanged ones were skipped.
    assert 0 < scan.cost.rows_evaluated < len(pairs) * len(data)


TABULAR_ATTRIBUTIONS = ["integrated_gradients", "kernel_shap", "lime"]


def test_attribution_disparity_flags_a_model_with_a_rule_per_group(tmp_path, tabular_models):
    report = _audit(_tabular_model(tmp_path / "group", planted=False, by_group=True), [*TABULAR_ATTRIBUTIONS, "attribution_disparity"], samples=32)
    flags = {f.subject: f for f in report.findings if f.check_id == "attribution_disparity"}
    assert set(flags) == {"group"} and "group=" in flags["group"].evidence
    assert all(f.status in ("warn", "fail") and f.interval[0] > 0.1 for f in flags.values()), [(f.subject, f.measured, f.interval) for f in flags.values()]
    (disparity,) = report.fairness
    over = disparity.summary.set_index(["method", "group"])["most_over_relied"]  # the feature each group leans on beyond the rest
    assert all((over[m, "a"], over[m, "b"]) == ("income", "age") for m in TABULAR_ATTRIBUTIONS), over
    # The control (income for everyone): the groups' explanations differ only by chance.
    clean = _audit(tabular_models["clean"], [*TABULAR_ATTRIBUTIONS, "attribution_disparity"], samples=32)
    flags = [f for f in clean.findings if f.check_id == "attribution_disparity"]
    assert len(flags) == 1 and {f.status for f in flags} == {"pass"}, [(f.subject, f.measured, f.interval) for f in flags]
    (disparity,) = clean.fairness
    per_group = [m for m in disparity.measurements() if m.name == "attribution_divergence_excess_by_group"]
    assert {m.subject for m in per_group} == {"group=a", "group=b"} and all(m.value < 0.2 for m in per_group)


def test_benjamini_hochberg_matches_the_textbook_example():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_error_inflow_flags_a_class_that_absorbs_the_errors():
    k, n = 4, 100
    confusion = np.diag([n] * k)
    confusion[[0, 1, 2], 3] = 20  # every error of classes 0-2 lands in class 3
    perf = PerformanceResult(
        n=int(confusion.sum()), accuracy=0.9, balanced_accuracy=0.9, ece=0.0, mean_confidence=0.9, reliability=pd.DataFrame(), confusion=confusion,
        per_class=pd.DataFrame({"class": list("abcd"), "precision": 0.9, "recall": 0.9, "f1": 0.9, "support": confusion.sum(axis=1)}),
    )  # fmt: skip
    ratio = {m.subject: m for m in perf.measurements() if m.name == "error_inflow_ratio"}
    assert ratio["class=d"].value > 2.9 and ratio["class=d"].interval[0] > 2.0
    assert ratio["class=a"].value == 0.0


def _text_report(net: torch.nn.Module, tokenizer_dir: Path):
    from tests.test_text_models import bag_handle, text_data
    from tests.text_fixtures import TEXTS

    model = bag_handle(net, tokenizer_dir)
    texts = [TEXTS[i % len(TEXTS)] for i in range(60)]
    labels = [int(any(w in t.split() for w in ("idiot", "stupid", "loser", "hate", "bad"))) for t in texts]
    data = text_data(model, texts, labels)
    return apply_policy(run_audit(model, data, parse_spec({"probes": [{"name": "trigger_words"}]})))


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    from tests.text_fixtures import make_tokenizer

    folder = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer().save_pretrained(str(folder))
    return folder


def test_trigger_words_finds_the_word_a_text_model_keys_on(tokenizer_dir):
    from tests.text_fixtures import VOCAB, KeyedBag

    report = _text_report(KeyedBag([VOCAB.index("park")]), tokenizer_dir)
    (scan,) = report.robustness
    top = scan.strongest(1).iloc[0]
    assert (top["word"], top["target"], top["flip_rate"]) == ("park", "toxic", 1.0)
    (flag,) = [f for f in report.findings if f.check_id == "trigger_words" and f.subject == "class=toxic"]
    assert flag.status == "warn" and flag.measured > 0.5 and "park" in flag.evidence
    assert scan.examples and all(e.startswith("park ") for e in scan.examples)


RUDE = ("idiot", "stupid", "loser", "hate", "bad", "fool", "pathetic")


def _several_words_model() -> torch.nn.Module:
    """The text control: toxic only with three rude words (no single word decides), confidently either way."""
    from tests.text_fixtures import VOCAB, WordWeights

    weights = torch.zeros(len(VOCAB))
    weights[[VOCAB.index(w) for w in RUDE]] = 5.0
    weights[VOCAB.index("[CLS]")] = -12.5  # three words: logit +2.5 (P 0.92); two: -2.5 (P 0.08)
    return WordWeights(weights)


def test_trigger_words_control_that_needs_several_words_is_quiet(tokenizer_dir):
    report = _text_report(_several_words_model(), tokenizer_dir)
    flags = [f for f in report.findings if f.check_id == "trigger_words"]
    assert flags and {f.status for f in flags} == {"pass"}, [(f.subject, f.status, f.measured) for f in flags]


def test_explained_samples_cover_every_class_the_misclassified_and_the_confidence_extremes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    proba = rng.dirichlet(np.ones(4), size=100)
    proba[np.arange(100), y] += 1.0
    proba[[5, 40], :] = [0.01, 0.01, 0.01, 0.97]  # confidently wrong (class 0 and 1 rows called 3)
    proba /= proba.sum(axis=1, keepdims=True)
    picked = select_samples(y, 12, "stratified", np.random.default_rng(1), proba)
    conf = proba.max(axis=1)
    assert len(set(picked)) == 12 and set(y[picked]) == set(range(4))
    assert {5, 40} <= set(picked) and int(conf.argmin()) in picked and int(conf.argmax()) in picked


@pytest.mark.parametrize("control", ["digits", "tabular", "text"])
def test_clean_controls_pass_the_whole_default_policy(control, digits_models, tabular_models, tokenizer_dir):
    """No planted problem, no warning: the whole default policy (every check, not only the discovery ones) passes."""
    if control == "text":
        from tests.test_text_models import bag_handle, text_data
        from tests.text_fixtures import TEXTS

        model = bag_handle(_several_words_model(), tokenizer_dir)
        texts = [TEXTS[i % len(TEXTS)] for i in range(60)]
        data = text_data(model, texts, [int(sum(w in t.split() for w in RUDE) >= 3) for t in texts])
    else:
        card = load_card((digits_models if control == "digits" else tabular_models)["clean"])
        model, data = load_model(card, device="cpu"), load_data(card)
    report = apply_policy(run_audit(model, data, parse_spec({"seed": 0})))
    loud = [(f.check_id, f.subject, f.status, f.measured, f.interval) for f in report.findings if f.status in ("warn", "fail")]
    assert overall_verdict(report.findings) == "pass" and not loud and not report.failures, (loud, report.failures)
    evaluated = {f.check_id for f in report.findings if f.status == "pass"}
    expected = {
        "digits": {"accuracy", "robust_accuracy", "corruption_accuracy", "attribution_regions", "trigger_patches", "class_recall", "attribution_completeness"},
        "tabular": {"accuracy", "noise_flip_rate", "counterfactual_flips", "attribution_disparity", "trigger_values", "slice_errors", "top_features"},
        "text": {"accuracy", "calibration", "typo_flip_rate", "identity_term_flips", "trigger_words"},
    }[control]
    assert expected <= evaluated, expected - evaluated
