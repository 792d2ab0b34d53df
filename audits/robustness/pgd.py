"""PGD: projected gradient descent, the standard strong first-order attack (Madry et al., 2018)."""

from __future__ import annotations

from audits.probes import register
from audits.robustness._attacks import AttackProbe, AttackSpec, Norm


@register
class PGD(AttackProbe):
    """Iterated gradient steps projected back onto the epsilon ball (L-inf or L2).

    Each step moves ``step_size * eps`` along ``sign(grad)`` (L-inf) or ``grad / ||grad||_2``
    (L2), projects onto the ball around the clean image and clips to the value range.

    Parameters
    ----------
    steps : int
        Gradient steps per attack.
    step_size : float or None
        Step length as a fraction of epsilon; None: 2.5 / steps (Madry et al.), so the
        steps can cross the ball.
    random_start : bool
        Start from a uniform random point of the ball instead of the clean image.
    restarts : int
        Independent random starts; a row is broken if any restart breaks it.
    keep_best : bool
        Count a row as broken as soon as any iterate is adversarial (and stop attacking
        it); False scores only the final iterate, as most libraries do.
    norm, epsilons, target, max_rows, refine_steps, n_examples, example_epsilon
        As for every attack (:class:`~audits.robustness._attacks.AttackProbe`).
    """

    name = "pgd"
    title = "PGD adversarial attack"
    description = (
        "Searches, in several gradient steps, for the perturbation of size at most epsilon that most increases "
        "the model's loss, and measures how accuracy falls as epsilon grows; the standard strong attack."
    )

    def __init__(
        self,
        *,
        norm: Norm = "linf",
        epsilons: list[float] | None = None,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        keep_best: bool = True,
        target: int | None = None,
        max_rows: int | None = 512,
        refine_steps: int = 3,
        n_examples: int = 4,
        example_epsilon: float | None = None,
    ) -> None:
        super().__init__(
            norm=norm, epsilons=epsilons, target=target, max_rows=max_rows,
            refine_steps=refine_steps, n_examples=n_examples, example_epsilon=example_epsilon,
        )  # fmt: skip
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be at least 1, got {steps} and {restarts}")
        if step_size is not None and step_size <= 0:
            raise ValueError(f"step_size must be > 0 (a fraction of epsilon), got {step_size}")
        self.steps = int(steps)
        self.step_size = step_size
        self.random_start = bool(random_start)
        self.restarts = int(restarts)
        self.keep_best = bool(keep_best)

    def attack_spec(self, low: float, high: float) -> AttackSpec:
        fraction = self.step_size if self.step_size is not None else 2.5 / self.steps
        return AttackSpec(
            norm=self.norm, steps=self.steps, step_fraction=float(fraction),
            random_start=self.random_start, keep_best=self.keep_best, low=low, high=high,
        )  # fmt: skip
