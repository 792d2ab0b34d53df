"""Membership inference: a memorised model leaks (AUC near 1, a policy warning); a model that did not overfit,
on disjoint data from the same distribution, does not (AUC near 0.5, its interval covering 0.5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from audits.data import load_data, load_training_sample
from audits.engine import run_audit
from audits.errors import DataError, SpecError
from audits.policy import evaluate_policy, load_policy
from audits.probes import make_probe
from audits.report import AuditReport
from audits.spec import AuditSpec, ProbeSpec
from audits.stats import tpr_at_fpr
from models.architectures import TabularMLP
from models.card import load_card
from models.loader import load_model
from models.tabular_encoding import TabularEncoder
from tests.conftest import TABULAR_FEATURES, tabular_frame, write_card

HIDDEN = [64]
MLP = {"target": "models.architectures:TabularMLP", "kwargs": {"in_features": 7, "n_classes": 2, "hidden": HIDDEN, "dropout": 0.0}}


class Memoriser(nn.Module):
    """A radial-basis network centred on its training rows: a trained linear head over exp(-gamma |x - c|^2).

    Trained to zero loss it recalls each training row's label, and away from them it knows little:
    the textbook memorising model.
    """

    def __init__(self, n_centres: int, in_features: int, gamma: float = 20.0) -> None:
        super().__init__()
        self.register_buffer("centres", torch.zeros(n_centres, in_features))
        self.gamma = gamma
        self.head = nn.Linear(n_centres, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.exp(-self.gamma * torch.cdist(x, self.centres) ** 2))


def _card(folder: Path, architecture: dict = MLP) -> dict:
    return {
        "name": "mia-model",
        "modality": "tabular",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": architecture,
        "class_names": ["low", "high"],
        "input": {"kind": "tabular", "features": TABULAR_FEATURES},
        "data": {"path": "eval.csv", "label_column": "label", "sensitive": ["group"], "train_path": "train.csv"},
    }


def _bundle(folder: Path, *, memorise: str | None) -> Path:
    """Train on ``train.csv`` and write the card; eval.csv is disjoint data from the same distribution.

    memorise ('rbf' or 'mlp'): 60 rows with coin-flip labels, trained to zero loss (only memory can fit
    them); None: 1,500 rows of the learnable rule, a few epochs with weight decay (no room to overfit).
    """
    folder.mkdir()
    n_train = 60 if memorise else 1500
    train, evaluation = tabular_frame(n_train, seed=1), tabular_frame(600, seed=2)
    if memorise:
        rng = np.random.default_rng(3)
        for frame in (train, evaluation):
            frame["label"] = rng.choice(["low", "high"], len(frame))
    train.to_csv(folder / "train.csv", index=False)
    evaluation.to_csv(folder / "eval.csv", index=False)
    architecture = {"target": f"{__name__}:Memoriser", "kwargs": {"n_centres": n_train, "in_features": 7}} if memorise == "rbf" else MLP
    card = _card(folder, architecture)
    raw = load_card(write_card(folder, card))
    x = torch.from_numpy(TabularEncoder(raw.input).encode(train))
    y = torch.from_numpy((train["label"] == "high").to_numpy().astype(np.int64))
    torch.manual_seed(0)
    if memorise == "rbf":
        net: nn.Module = Memoriser(n_train, 7)
        net.centres.copy_(x)
    else:
        net = TabularMLP(in_features=7, n_classes=2, hidden=HIDDEN, dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05 if memorise == "rbf" else 0.01, weight_decay=0.0 if memorise else 1e-3)
    for _ in range(3000 if memorise else 60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if memorise and loss.item() < 1e-3:
            break
    if memorise:
        assert loss.item() < 1e-3  # memorised: (near) zero training loss on random labels
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    return write_card(folder, card)


def _audit(card_path: Path) -> AuditReport:
    card = load_card(card_path)
    return run_audit(load_model(card), load_data(card), AuditSpec(probes=[ProbeSpec(name="membership_inference")]))


def test_a_memorised_model_leaks_membership_and_the_policy_warns(tmp_path):
    report = _audit(_bundle(tmp_path / "memorised", memorise="rbf"))
    result = report.robustness[0]
    attacks = result.attacks.set_index("attack")
    assert result.n_members == result.n_nonmembers == 60
    assert result.member_accuracy == 1.0 and result.nonmember_accuracy < 0.7
    for attack in ("loss", "confidence"):
        assert attacks.loc[attack, "auc"] > 0.95, attack
        assert attacks.loc[attack, "auc_low"] > 0.9, attack
    assert attacks.loc["loss", "tpr_at_fpr_0_01"] > 0.9  # nearly every member found at (at most) 1% false positives
    findings = [f for f in evaluate_policy(report, load_policy()) if f.check_id == "membership_leak"]
    assert findings and {f.status for f in findings if f.subject == "loss"} == {"warn"}


def test_an_mlp_trained_to_zero_loss_on_random_labels_leaks_less_but_still_warns(tmp_path):
    # A ReLU network is confident off its training rows too, so half of the non-members (those it happens
    # to label right) look like members: the loss attack reaches about 0.75, not 1 - still well above chance.
    report = _audit(_bundle(tmp_path / "mlp", memorise="mlp"))
    attacks = report.robustness[0].attacks.set_index("attack")
    assert 0.6 < attacks.loc["loss", "auc"] < 0.9 and attacks.loc["loss", "auc_low"] > 0.55
    findings = [f for f in evaluate_policy(report, load_policy()) if f.check_id == "membership_leak" and f.subject == "loss"]
    assert [f.status for f in findings] == ["warn"]


def test_a_model_that_did_not_overfit_is_at_chance_on_disjoint_data(tmp_path):
    report = _audit(_bundle(tmp_path / "general", memorise=None))
    result = report.robustness[0]
    assert result.n_members == result.n_nonmembers == 600
    assert abs(result.member_accuracy - result.nonmember_accuracy) < 0.05
    for attack in result.attacks.itertuples(index=False):
        assert abs(attack.auc - 0.5) < 0.06, attack
        assert attack.auc_low < 0.5 < attack.auc_high, attack
    findings = [f for f in evaluate_policy(report, load_policy()) if f.check_id == "membership_leak"]
    assert findings and all(f.status == "pass" for f in findings)
    groups = result.by_group
    assert set(groups["group"]) == {"a", "b"} and (groups["n_members"] > 0).all()


def test_membership_inference_is_skipped_without_a_training_sample(tabular_bundle):
    card = load_card(tabular_bundle["card_path"])
    report = run_audit(load_model(card), load_data(card), AuditSpec(probes=[ProbeSpec(name="membership_inference")]))
    assert [s.name for s in report.skipped] == ["membership_inference"]
    assert "data.train_path" in report.skipped[0].reason


def test_a_training_sample_without_the_sensitive_columns_is_refused_naming_the_fix(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    tabular_frame(30).drop(columns=["group"]).to_csv(folder / "train.csv", index=False)
    card = load_card(write_card(folder, _card(folder)))
    with pytest.raises(DataError) as exc:
        load_training_sample(card)
    assert "group" in str(exc.value) and exc.value.fix


def test_an_image_training_sample_needs_its_attributes_file(image_bundle):
    folder = image_bundle["dir"]
    np.savez(folder / "train.npz", x=image_bundle["x"][:10], y=image_bundle["y"][:10])
    card = load_card(write_card(folder, {**image_bundle["card"], "data": {**image_bundle["card"]["data"], "train_path": "train.npz"}}))
    with pytest.raises(DataError, match="train_attributes_path"):
        load_training_sample(card)


def test_tpr_at_low_fpr_counts_members_strictly_above_the_threshold():
    members = np.array([10.0, 9.0, 0.5, 0.2])
    nonmembers = np.linspace(0, 1, 100)  # 1% FPR: one non-member (1.0) may exceed the threshold 0.98...
    tpr, fpr = tpr_at_fpr(members, nonmembers, 0.01)
    assert tpr == 0.5 and fpr == pytest.approx(0.01)
    tpr, fpr = tpr_at_fpr(members, nonmembers, 0.001)  # too few non-members to resolve 0.1%: achieved FPR 0
    assert tpr == 0.5 and fpr == 0.0


def test_zoo_cards_ship_a_training_sample_disjoint_from_their_evaluation_data():
    from models.registry import resolve_card

    for name in ("digits-cnn", "digits-vit", "adult-mlp", "toxicity-minilm"):
        card = resolve_card(name)
        train, evaluation = load_training_sample(card), load_data(card)
        assert train is not None and 0 < len(train) <= 2000, name
        assert list(train.sensitive) == list(evaluation.sensitive)
    cnn = resolve_card("digits-cnn")
    ids = {int(i) for i in np.genfromtxt(cnn.resolve("train_attributes.csv"), delimiter=",", names=True, dtype=None, encoding=None)["sample_id"]}
    eval_ids = {int(i) for i in np.genfromtxt(cnn.resolve("eval_attributes.csv"), delimiter=",", names=True, dtype=None, encoding=None)["sample_id"]}
    assert not ids & eval_ids


def test_bad_probe_parameters_are_refused_naming_them():
    with pytest.raises(SpecError, match="loss, confidence, calibrated_loss"):
        make_probe("membership_inference", {"attacks": ["shadow_models"]})
    with pytest.raises(SpecError, match="fpr_targets"):
        make_probe("membership_inference", {"fpr_targets": [0.0]})


def test_the_recipes_rewrite_the_committed_training_samples_byte_for_byte(tmp_path):
    from models.build_zoo import DEFAULT_OUT, write_training_samples

    written = write_training_samples(["digits-cnn", "adult-mlp", "toxicity-minilm"], tmp_path)
    for name, sample in written.items():
        files = [sample["path"], *([sample["attributes_path"]] if "attributes_path" in sample else [])]
        for file in files:
            assert (tmp_path / name / file).read_bytes() == (DEFAULT_OUT / name / file).read_bytes(), f"{name}/{file}"
