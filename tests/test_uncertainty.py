"""Uncertainty probes: MC dropout (skipped without dropout; entropy rises on noise; the model untouched),
deep ensembles, test-time augmentation, selective prediction and OOD detection, with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from torch import nn

from audits.data import AuditData, load_data
from audits.engine import build_context, run_audit
from audits.probes import make_probe
from audits.render.blocks import Paragraph
from audits.render.registry import view_for
from audits.report import AuditReport
from audits.spec import AuditSpec, ProbeSpec
from audits.stats import auroc, auroc_interval
from audits.uncertainty._sources import decompose, entropy, shift
from audits.uncertainty.predictive_uncertainty import risk_coverage, selective_accuracy
from models.architectures import DigitsCNN
from models.card import load_card, parse_card
from models.loader import load_model, wrap_model
from tests.conftest import write_card

IMAGE_CARD = {
    "modality": "image", "format": "torchscript", "weights": "unused.pt", "class_names": [str(i) for i in range(10)],
    "input": {"kind": "image", "channels": 1, "height": 8, "width": 8},
}  # fmt: skip


def _digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return (x[:n], d.target[:n]) if n else (x, d.target)


def _data(x: np.ndarray, y: np.ndarray) -> AuditData:
    site = np.where(np.arange(len(y)) % 3 == 0, "B", "A")
    return AuditData(
        modality="image", x=x, y=y, class_names=[str(i) for i in range(10)], attributes=pd.DataFrame({"site": site}),
        sensitive=["site"], source="digits", sha256=str(len(y)),
    )  # fmt: skip


def _trained_mlp(dropout: float) -> nn.Module:
    """An MLP trained on the first 1200 digits (deterministic), with or without dropout."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, 64), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    net = nn.Sequential(*layers, nn.Linear(64, 10))
    x, y = _digits(1200)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    return net.eval()


def _handle(net: nn.Module, name: str = "mlp"):
    return wrap_model(net, parse_card({"name": name, **IMAGE_CARD}, base_dir=Path(".")), device="cpu")


def test_entropy_and_mutual_information_closed_forms():
    uniform = np.full((1, 4), 0.25)
    assert entropy(uniform)[0] == pytest.approx(np.log(4))
    assert entropy(np.array([[1.0, 0.0]]))[0] == 0.0
    # two confident passes that disagree: the mean is uniform (entropy log 2), each pass has entropy 0, so MI = log 2
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    _, total, expected, mi = decompose(samples)
    assert total[0] == pytest.approx(np.log(2)) and expected[0] == 0.0 and mi[0] == pytest.approx(np.log(2))
    # identical passes: no disagreement
    same = np.repeat(np.array([[[0.7, 0.3]]]), 5, axis=0)
    assert decompose(same)[3][0] == pytest.approx(0.0, abs=1e-12)


def test_risk_coverage_known_answers():
    correct = np.array([True, True, True, False])
    # confidence ranks the one error last: risk 0, 0, 0, 1/4 -> AURC 1/16 = the best possible, E-AURC 0
    risk, aurc, e_aurc = risk_coverage(np.array([0.9, 0.8, 0.7, 0.1]), correct)
    np.testing.assert_allclose(risk, [0, 0, 0, 0.25])
    assert aurc == pytest.approx(1 / 16) and e_aurc == pytest.approx(0.0)
    # the error ranked first: risk 1, 1/2, 1/3, 1/4
    _, worst, e_worst = risk_coverage(np.array([0.1, 0.8, 0.7, 0.9]), correct)
    assert worst == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4) and e_worst == pytest.approx(worst - 1 / 16)
    assert selective_accuracy(np.array([0.9, 0.8, 0.7, 0.1]), correct, 0.75) == 1.0
    assert selective_accuracy(np.array([0.9, 0.8, 0.7, 0.1]), correct, 1.0) == 0.75


def test_auroc_matches_the_rank_definition_and_its_interval_covers_it():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 1, 300), rng.normal(0, 1, 200)
    a[:20] = b[:20]  # ties
    expected = roc_auc_score(np.r_[np.ones(300), np.zeros(200)], np.r_[a, b])
    assert auroc(a, b) == pytest.approx(expected)
    lo, hi = auroc_interval(auroc(a, b), 300, 200)
    assert lo < expected < hi
    assert auroc([1.0, 2.0], [0.0]) == 1.0 and auroc([0.0], [1.0, 2.0]) == 0.0 and auroc([1.0], [1.0]) == 0.5


def test_shift_moves_images_by_one_pixel_and_repeats_the_border():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    right = shift(x, 0, 1)
    assert torch.equal(right[..., 1:], x[..., :-1]) and torch.equal(right[..., 0], x[..., 0])
    assert torch.equal(shift(x, 0, 0), x)


def test_mc_dropout_is_skipped_with_a_reason_on_a_model_without_dropout():
    model = _handle(_trained_mlp(dropout=0.0))
    x, y = _digits(200)
    report = run_audit(model, _data(x, y), AuditSpec(probes=[ProbeSpec(name="uncertainty", params={"sources": ["mc_dropout"]})]))
    assert [s.name for s in report.skipped] == ["uncertainty"]
    assert "no dropout layer" in report.skipped[0].reason
    # with every source selected the probe runs, and says which sources it left out
    result = make_probe("uncertainty", {"max_rows": 100}).run(model, _data(x, y), build_context(model, _data(x, y)))
    assert "mc_dropout" not in set(result.sources["source"]) and any("no dropout layer" in n for n in result.notes)
    assert {"softmax", "tta"} <= set(result.sources["source"])


def test_mc_dropout_entropy_rises_on_noise_and_leaves_parameters_and_modes_unchanged():
    net = _trained_mlp(dropout=0.5)
    model = _handle(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = {name: m.training for name, m in net.named_modules()}
    x, y = _digits()
    x, y = x[1200:], y[1200:]  # rows the model did not train on
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.5, x.shape), 0, 1).astype(np.float32)
    probe = make_probe("uncertainty", {"sources": ["softmax", "mc_dropout"], "mc_passes": 16, "max_rows": None})
    clean_data, noisy_data = _data(x, y), _data(noisy, y)
    clean = probe.run(model, clean_data, build_context(model, clean_data)).sources.set_index("source")
    shifted = probe.run(model, noisy_data, build_context(model, noisy_data)).sources.set_index("source")
    assert clean.loc["mc_dropout", "passes"] == 16
    assert clean.loc["mc_dropout", "accuracy"] > 0.85
    assert shifted.loc["mc_dropout", "mean_entropy"] > clean.loc["mc_dropout", "mean_entropy"] + 0.2
    assert shifted.loc["mc_dropout", "mean_mutual_information"] > clean.loc["mc_dropout", "mean_mutual_information"]
    assert clean.loc["mc_dropout", "mean_mutual_information"] > 0  # the passes do differ
    assert clean.loc["softmax", "mean_mutual_information"] == 0
    # the model is exactly as the loader left it: same parameters, every module in its mode, deterministic outputs
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {name: m.training for name, m in net.named_modules()} == modes
    np.testing.assert_array_equal(model.predict_proba(x[:50]), model.predict_proba(x[:50]))


def test_mc_dropout_restores_the_modes_when_the_forward_pass_fails():
    net = _trained_mlp(dropout=0.5)
    model = _handle(net)
    with pytest.raises(RuntimeError), model.dropout_active() as n:
        assert n == 1 and net[3].training
        raise RuntimeError("boom")
    assert not any(m.training for m in net.modules())


def test_mc_dropout_is_reproducible_under_the_seed():
    model = _handle(_trained_mlp(dropout=0.5))
    x, y = _digits(300)
    data = _data(x, y)
    probe = make_probe("uncertainty", {"sources": ["mc_dropout"], "max_rows": 200})
    a = probe.run(model, data, build_context(model, data, seed=3))
    b = probe.run(model, data, build_context(model, data, seed=3))
    pd.testing.assert_frame_equal(a.sources, b.sources)


def _ensemble_bundle(image_bundle, *, identical: bool) -> Path:
    folder = image_bundle["dir"]
    names = []
    for i in (1, 2):
        torch.manual_seed(0 if identical else 100 + i)
        net = image_bundle["net"] if identical else DigitsCNN(in_channels=1, n_classes=10, width=4)
        save_file(net.state_dict(), str(folder / f"member{i}.safetensors"))
        names.append(f"member{i}.safetensors")
    return write_card(folder, {**image_bundle["card"], "ensemble": names})


@pytest.mark.parametrize("identical", [True, False])
def test_deep_ensemble_mutual_information_is_zero_for_identical_members_only(image_bundle, identical):
    card = load_card(_ensemble_bundle(image_bundle, identical=identical))
    model, data = load_model(card), load_data(card)
    result = make_probe("uncertainty", {"sources": ["softmax", "ensemble"]}).run(model, data, build_context(model, data))
    row = result.sources.set_index("source").loc["ensemble"]
    assert row["passes"] == 3
    if identical:
        assert row["mean_mutual_information"] == pytest.approx(0.0, abs=1e-6)
        softmax = result.sources.set_index("source").loc["softmax"]
        assert row["mean_entropy"] == pytest.approx(softmax["mean_entropy"], abs=1e-5)
    else:
        assert row["mean_mutual_information"] > 1e-3  # random members: near-uniform outputs, yet they disagree
    assert result.cost.model_calls >= 3  # every member ran, counted in the probe's cost
    ood = make_probe("ood_detection", {"corruptions": ["gaussian_noise"], "severities": [5]}).run(model, data, build_context(model, data))
    assert set(ood.table["score"]) == {"msp", "energy", "ensemble_agreement"}


def test_zoo_digits_cnn_ensemble_loads_its_members_and_they_disagree_more_on_shifted_images():
    from audits.render.views.uncertainty import ensemble_disagreement
    from models.loader import load_ensemble
    from models.registry import ZOO_DIR

    card = load_card(ZOO_DIR / "digits-cnn" / "ensemble.yaml")
    plain = load_card(ZOO_DIR / "digits-cnn" / "card.yaml")
    assert card.weights == plain.weights and len(card.ensemble) == 2  # the zoo model is the first member
    model, data = load_model(card), load_data(card)
    members = load_ensemble(model)
    assert len(members) == 3 and len({m.weights_sha256 for m in members}) == 3
    result = make_probe("ood_detection", {"corruptions": ["gaussian_noise", "occlusion"], "severities": [5], "max_rows": 256}).run(
        model, data, build_context(model, data)
    )
    assert result.cost.model_calls >= 3 * 3  # clean and two corruptions, for each member
    assert "ensemble_agreement" in result.scores
    table = ensemble_disagreement(result)
    (row,) = table.itertuples(index=False)
    assert row.clean > 0  # independently trained members do not agree on every clean image
    assert row.shifted > row.clean  # and disagree more once the images are shifted
    agreement = result.table[result.table["score"] == "ensemble_agreement"]
    assert (agreement["auroc"] > 0.5).all()  # so their agreement flags the shifted images better than chance


def test_ood_detection_is_chance_for_a_model_blind_to_its_input():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.linspace(0, 1, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], -1) + 0 * x.flatten(1).sum(dim=1, keepdim=True)

    model = _handle(Constant(), "constant")
    x, y = _digits(100)
    data = _data(x, y)
    result = make_probe("ood_detection", {"corruptions": ["contrast", "occlusion"], "severities": [1, 5]}).run(model, data, build_context(model, data))
    assert len(result.table) == 2 * 2 * 2
    np.testing.assert_allclose(result.table["auroc"], 0.5)
    assert all(lo < 0.5 < hi for lo, hi in zip(result.table["auroc_low"], result.table["auroc_high"], strict=True))


def test_ood_detection_separates_severe_corruptions_for_a_trained_model():
    model = _handle(_trained_mlp(dropout=0.0))
    x, y = _digits()
    data = _data(x[1200:], y[1200:])
    result = make_probe("ood_detection", {"corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5]}).run(model, data, build_context(model, data))
    t = result.table.set_index(["corruption", "severity", "score"])
    assert t.loc[("gaussian_noise", 5, "msp"), "auroc_low"] > 0.6  # clearly better than chance (0.73 at seed 0)
    assert t.loc[("gaussian_noise", 5, "msp"), "auroc"] > t.loc[("gaussian_noise", 1, "msp"), "auroc"]
    names = {m.key for m in result.measurements()}
    assert "ood_auroc/msp/gaussian_noise/severity=5" in names and "mean_ood_auroc/energy/severity=5" in names


def test_uncertainty_results_round_trip_and_render_with_their_explanation(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    spec = AuditSpec(probes=[ProbeSpec(name="uncertainty"), ProbeSpec(name="ood_detection", params={"corruptions": ["jpeg"], "severities": [3]})])
    report = run_audit(model, data, spec)
    again = AuditReport.from_json(report.to_json())
    for original, loaded in zip(report.robustness, again.robustness, strict=True):
        assert list(original.measurements()) == list(loaded.measurements())
        blocks = view_for(loaded)(loaded, None)
        assert isinstance(blocks[0], Paragraph) and "What it does not mean" in blocks[0].text
    by_group = report.robustness[0].by_group
    assert set(by_group["group"]) == {"A", "C"} and set(by_group["source"]) == {"softmax", "mc_dropout", "tta"}


def test_bad_parameters_are_refused_naming_the_choices():
    from audits.errors import SpecError

    with pytest.raises(SpecError, match="softmax, mc_dropout, ensemble, tta"):
        make_probe("uncertainty", {"sources": ["bayes_by_backprop"]})
    with pytest.raises(SpecError, match="non-empty"):
        make_probe("uncertainty", {"sources": []})
    with pytest.raises(SpecError, match="tta_passes"):
        make_probe("uncertainty", {"tta_passes": 12})
    with pytest.raises(SpecError, match="severities"):
        make_probe("ood_detection", {"severities": [7]})
