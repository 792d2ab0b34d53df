"""Membership inference: can an attacker tell the model's training rows from unseen rows by its outputs?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
from scipy.special import log_softmax

from audits.probes import Probe, RunContext, register
from audits.results.privacy import MembershipInferenceResult, tpr_column
from audits.stats import auroc, auroc_interval, tpr_at_fpr, wilson
from models.card import NumericFeature

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

ATTACKS = ("loss", "confidence", "calibrated_loss")
# False-positive rates of the ROC curve's points (log-spaced: the low-FPR end is what matters).
ROC_FPR = tuple(np.unique(np.concatenate([[0.0], np.logspace(-3, 0, 31)])))


def _losses(model: ModelHandle, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-entropy of the true label, the top softmax probability and whether the prediction is right, per row (one batched pass)."""
    logp = log_softmax(model.logits(x).astype(np.float64), axis=1)
    return -logp[np.arange(len(y)), y], np.exp(logp.max(axis=1)), logp.argmax(axis=1) == y


@register
class MembershipInference(Probe):
    """Loss-threshold, confidence and neighbourhood-calibrated loss attacks: training rows (from the card's
    ``data.train_path``) against evaluation rows, with AUC and true-positive rate at low false-positive rates.

    A model that memorised its training data gives its training rows markedly lower loss and higher
    confidence than unseen rows, and an attacker holding a record can then tell whether it was trained on.
    Members and non-members are balanced (a seeded sample of each, the smaller count). The calibrated
    attack compares each row's loss with the mean loss of ``n_neighbours`` small random perturbations of it
    (images: Gaussian pixel noise; tabular: noise on the numeric features), a per-example threshold that
    discounts how hard the row is without training reference models; text rows have no such perturbation.

    Parameters
    ----------
    attacks : list of str
        Any of loss, confidence, calibrated_loss.
    fpr_targets : list of float
        False-positive rates at which the true-positive rate is reported (Carlini et al. 2022).
    max_rows : int or None
        At most this many members and as many non-members (None: the smaller of the two sets).
    n_neighbours : int
        Perturbed copies per row for the calibrated attack.
    noise : float
        Their noise: a fraction of the value range (images) or of a standard deviation (tabular).
    """

    name = "membership_inference"
    category: ClassVar = "robustness"
    result_type = MembershipInferenceResult
    modalities = ("image", "tabular", "text")
    default_for = ("image", "tabular", "text")
    title = "Membership inference (privacy)"
    description = (
        "Tests whether the model leaks which records it was trained on: attacks that threshold its loss or confidence "
        "try to tell a sample of its training data from the evaluation data (AUC, and true-positive rate at 1% and 0.1% "
        "false positives), overall and per group."
    )

    def __init__(
        self,
        *,
        attacks: list[str] = ATTACKS,
        fpr_targets: list[float] = (0.01, 0.001),
        max_rows: int | None = 2000,
        n_neighbours: int = 8,
        noise: float = 0.05,
    ) -> None:
        unknown = [a for a in attacks if a not in ATTACKS]
        if unknown or not attacks:
            raise ValueError(f"attacks must be a non-empty list from {', '.join(ATTACKS)}; got {list(attacks)}")
        self.attacks = list(dict.fromkeys(attacks))
        if not fpr_targets or any(not 0 < float(f) < 1 for f in fpr_targets):
            raise ValueError(f"fpr_targets must be a non-empty list of rates in (0, 1), got {list(fpr_targets)}")
        self.fpr_targets = sorted({float(f) for f in fpr_targets}, reverse=True)
        if max_rows is not None and int(max_rows) < 2:
            raise ValueError(f"max_rows must be at least 2 (or None), got {max_rows}")
        self.max_rows = None if max_rows is None else int(max_rows)
        if int(n_neighbours) < 1:
            raise ValueError(f"n_neighbours must be at least 1, got {n_neighbours}")
        self.n_neighbours = int(n_neighbours)
        if not float(noise) > 0:
            raise ValueError(f"noise must be > 0, got {noise}")
        self.noise = float(noise)

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is not None:
            return reason
        if model.card.data is None or not model.card.data.train_path:
            return "membership inference needs a sample of the training data: the card declares no data.train_path"
        return None

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> MembershipInferenceResult:
        from audits.data import load_training_sample

        train = load_training_sample(model.card)
        assert train is not None  # check() saw data.train_path
        n = min(len(train), len(data), self.max_rows or len(data))
        rng = context.rng(self.name)
        member_rows = np.sort(rng.permutation(len(train))[:n])
        nonmember_rows = np.sort(rng.permutation(len(data))[:n])
        notes: list[str] = []
        if train.sha256 == data.sha256:
            notes.append(
                "The training sample is the evaluation data itself: members and non-members are the same rows, so the attack cannot do better than chance."
            )

        context.report(0.1, "losses")
        sides = {"member": (train, member_rows), "nonmember": (data, nonmember_rows)}
        scores: dict[str, dict[str, np.ndarray]] = {"member": {}, "nonmember": {}}
        accuracy = {}
        for side, (d, rows) in sides.items():
            x, y = d.x[rows], d.y[rows]
            loss, confidence, correct = _losses(model, x, y)
            scores[side]["loss"] = -loss
            scores[side]["confidence"] = confidence
            accuracy[side] = float(correct.mean()) if len(y) else float("nan")
            if "calibrated_loss" in self.attacks:
                neighbours = self._neighbours(model, d, x, context.rng(f"{self.name}:neighbours:{side}"))
                if neighbours is not None:
                    near, _, _ = _losses(model, neighbours, np.tile(y, self.n_neighbours))
                    scores[side]["calibrated_loss"] = near.reshape(self.n_neighbours, len(y)).mean(axis=0) - loss
        attacks = [a for a in self.attacks if a in scores["member"]]
        if "calibrated_loss" in self.attacks and "calibrated_loss" not in attacks:
            notes.append(
                f"The calibrated attack needs perturbed copies of a row ({data.modality} rows here have no numeric values to perturb), so it was left out."
            )

        records, roc, groups = [], [], []
        for attack in attacks:
            pos, neg = scores["member"][attack], scores["nonmember"][attack]
            auc = auroc(pos, neg)
            lo, hi = auroc_interval(auc, len(pos), len(neg)) or [float("nan")] * 2
            record = {"attack": attack, "auc": auc, "auc_low": lo, "auc_high": hi}
            for fpr in self.fpr_targets:
                tpr, achieved = tpr_at_fpr(pos, neg, fpr)
                interval = wilson(tpr, len(pos)) or [float("nan")] * 2
                column = tpr_column(fpr)
                record |= {column: tpr, f"{column}_low": interval[0], f"{column}_high": interval[1], f"{column}_fpr_achieved": achieved}
            records.append(record | {"n_members": len(pos), "n_nonmembers": len(neg)})
            for fpr in ROC_FPR:
                tpr, achieved = tpr_at_fpr(pos, neg, fpr) if fpr < 1 else (1.0, 1.0)
                roc.append({"attack": attack, "fpr": achieved, "tpr": tpr})
            for attribute in data.sensitive:
                member_values = train.attributes[attribute].astype(str).to_numpy()[member_rows]
                nonmember_values = data.attributes[attribute].astype(str).to_numpy()[nonmember_rows]
                for group in sorted(set(member_values) | set(nonmember_values)):
                    p, q = pos[member_values == group], neg[nonmember_values == group]
                    g_auc = auroc(p, q)
                    g_lo, g_hi = auroc_interval(g_auc, len(p), len(q)) or [float("nan")] * 2
                    groups.append(
                        {
                            "attack": attack,
                            "attribute": attribute,
                            "group": group,
                            "auc": g_auc,
                            "auc_low": g_lo,
                            "auc_high": g_hi,
                            "n_members": len(p),
                            "n_nonmembers": len(q),
                        }
                    )
        return MembershipInferenceResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            n_members=n,
            n_nonmembers=n,
            train_source=Path(train.source).name,
            member_accuracy=accuracy["member"],
            nonmember_accuracy=accuracy["nonmember"],
            fpr_targets=list(self.fpr_targets),
            attacks=pd.DataFrame(records),
            roc=pd.DataFrame(roc, columns=["attack", "fpr", "tpr"]).drop_duplicates(ignore_index=True),
            by_group=pd.DataFrame(groups, columns=["attack", "attribute", "group", "auc", "auc_low", "auc_high", "n_members", "n_nonmembers"]),
            notes=notes,
        )

    def _neighbours(self, model: ModelHandle, data: AuditData, x: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """``n_neighbours`` perturbed copies of every row, copy-major ((k * n, ...)); None for text."""
        k = self.n_neighbours
        if data.modality == "image":
            low, high = (float(v) for v in model.card.input.value_range)
            noisy = np.tile(x, (k, 1, 1, 1)) + rng.normal(0.0, self.noise * (high - low), (k * len(x), *x.shape[1:]))
            return np.clip(noisy, low, high).astype(np.float32)
        if data.modality == "tabular":
            numeric = [int(cols[0]) for f, cols in zip(model.card.input.features, data.feature_groups, strict=True) if isinstance(f, NumericFeature)]
            if not numeric:
                return None
            noisy = np.tile(x, (k, 1)).astype(np.float32)
            spread = data.x[:, numeric].std(axis=0) if len(data) > 1 else np.ones(len(numeric))
            noisy[:, numeric] += rng.normal(0.0, 1.0, (len(noisy), len(numeric))) * self.noise * np.maximum(spread, 1e-6)
            return noisy
        return None
