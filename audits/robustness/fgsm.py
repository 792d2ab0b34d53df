"""FGSM: one gradient step of the full epsilon budget (Goodfellow et al., 2015)."""

from __future__ import annotations

from audits.probes import register
from audits.robustness._attacks import AttackProbe, AttackSpec


@register
class FGSM(AttackProbe):
    """Fast gradient sign method (L-inf) and its L2 form, the fast gradient method.

    One step from the clean image: ``x + eps * sign(grad)`` (L-inf) or
    ``x + eps * grad / ||grad||_2`` (L2) of the cross-entropy, clipped to the value range.
    Cheap and a lower bound on fragility; PGD is the stronger attack.
    Parameters are those of :class:`~audits.robustness._attacks.AttackProbe`.
    """

    name = "fgsm"
    title = "FGSM adversarial attack"
    description = (
        "Nudges every pixel by at most epsilon in the direction that most increases the model's loss (one gradient step) "
        "and measures how accuracy falls as epsilon grows; a fast, weak attack."
    )

    def attack_spec(self, low: float, high: float) -> AttackSpec:
        return AttackSpec(norm=self.norm, steps=1, step_fraction=1.0, random_start=False, keep_best=True, low=low, high=high)
