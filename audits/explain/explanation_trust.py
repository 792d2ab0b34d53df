"""Explanation trust: score every attribution map of the audit for faithfulness, randomization
sanity, stability and sparseness, and give each method a pass/warn/fail verdict per property.

The probe reads the maps that attribution probes produced earlier in the same audit
(``RunContext.earlier``). It is filed in the ``robustness`` category so the engine runs it
after every explanation probe (categories run in ``CATEGORY_ORDER``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from audits.engine import select_samples
from audits.errors import AuditError
from audits.explain._text import player_segments
from audits.explain._trust_metrics import Features, faithfulness, feature_maps, gini, image_blocks, relative_change, spearman_abs
from audits.explain._trust_rerun import parameter_layers, randomized_copy, rerun
from audits.probes import Probe, RunContext, make_probe, register, registered_probes
from audits.results import AttributionResult
from audits.results.trust import PROPERTIES, TrustResult, bootstrap_interval, cohen_kappa

if TYPE_CHECKING:
    from audits.data import AuditData
    from models.loader import ModelHandle

# What the probe explains itself when no attribution probe ran before it.
_FALLBACK = {"image": "saliency", "tabular": "integrated_gradients", "text": "layer_integrated_gradients"}


def _rows(features: Features, rows) -> Features:
    """``features`` of some of its samples (their valid features, and their own index where it differs per sample)."""
    index = features.index[rows] if features.index.ndim == 2 else features.index
    return dataclasses.replace(features, valid=features.valid[rows], index=index)


@register
class ExplanationTrust(Probe):
    """Trust metrics of the audit's attribution maps.

    Parameters
    ----------
    methods : list of str or None
        Attribution methods to score (probe names); None scores every one that ran before.
    n_samples : int
        Explained samples whose maps are re-run (randomized model, random logit, noise) per method
        (the first ones, which the audit spreads over classes).
    faithfulness_samples : int
        Samples scored for faithfulness: every explained one, then (seeded, spread over classes) more
        that the method is re-run on, as long as that costs at most ``max_rerun_rows`` model rows.
    max_rerun_rows : int
        Model rows a method's re-runs may spend on extra samples: methods whose maps are cheap (gradients)
        are scored on up to ``faithfulness_samples`` samples and re-run on more than ``n_samples`` for the
        randomization and stability checks; costly ones (LIME, KernelSHAP) stay at the explained samples
        and ``n_samples``.
    steps : int
        Points of the deletion and insertion curves: features leave or enter in ``steps`` chunks,
        so a curve costs ``steps + 1`` model rows whatever the image size.
    n_random : int
        Random orderings each curve is normalised against.
    n_boot : int
        Bootstrap resamples of the scored samples for each property's 95% interval (0: no intervals).
    corr_runs, corr_fraction : int, float
        Random feature subsets (each this share of the features) for the faithfulness correlation.
    max_features : int
        Image pixels are grouped into square blocks so that there are at most this many features.
    cascade_stages : int
        Stages of the top-down cascading randomization (the last randomizes every layer: the one-shot
        check); 0 turns the model-randomization check off.
    random_logit : bool
        Compare each map with the map of a random other class (models with more than two classes).
    noise : float
        Input noise of the stability check: a share of the image value range, or of each numeric
        tabular column's standard deviation (text has no stability check).
    noise_draws : int
        Noisy copies per sample; 0 turns the stability check off.
    """

    name = "explanation_trust"
    category: ClassVar = "robustness"
    result_type = TrustResult
    modalities = ("image", "tabular", "text")
    default_for = ("image", "tabular", "text")
    title = "Explanation trust"
    description = (
        "Scores every attribution map: does deleting its most important features hurt the prediction more than random (faithfulness), "
        "does it change when the model's weights are randomized (sanity), and does it survive small input noise (stability)."
    )

    def __init__(
        self,
        *,
        methods: list[str] | None = None,
        n_samples: int = 6,
        faithfulness_samples: int = 32,
        max_rerun_rows: int = 4096,
        steps: int = 16,
        n_random: int = 4,
        n_boot: int = 1000,
        corr_runs: int = 32,
        corr_fraction: float = 0.125,
        max_features: int = 256,
        cascade_stages: int = 2,
        random_logit: bool = True,
        noise: float = 0.05,
        noise_draws: int = 2,
    ) -> None:
        for label, value, low in (
            ("n_samples", n_samples, 1),
            ("faithfulness_samples", faithfulness_samples, 1),
            ("steps", steps, 1),
            ("corr_runs", corr_runs, 3),
            ("max_features", max_features, 4),
        ):
            if value < low:
                raise ValueError(f"{label} must be at least {low}, got {value}")
        for label, value in (("n_random", n_random), ("n_boot", n_boot), ("cascade_stages", cascade_stages), ("noise_draws", noise_draws)):
            if value < 0:
                raise ValueError(f"{label} must be 0 or more, got {value}")
        if not 0 < corr_fraction < 1:
            raise ValueError(f"corr_fraction must lie strictly between 0 and 1, got {corr_fraction}")
        if noise < 0:
            raise ValueError(f"noise must be 0 or more, got {noise}")
        self.methods = None if methods is None else list(methods)
        self.n_samples = n_samples
        self.faithfulness_samples = faithfulness_samples
        self.max_rerun_rows = max_rerun_rows
        self.steps = steps
        self.n_random = n_random
        self.n_boot = n_boot
        self.corr_runs = corr_runs
        self.corr_fraction = corr_fraction
        self.max_features = max_features
        self.cascade_stages = cascade_stages
        self.random_logit = random_logit
        self.noise = noise
        self.noise_draws = noise_draws

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> TrustResult:
        maps = [r for r in context.earlier if isinstance(r, AttributionResult) and r.modality == data.modality and len(r.sample_indices)]
        if self.methods is not None:
            maps = [r for r in maps if r.method in self.methods]
        notes: list[str] = []
        if not maps:
            # Nothing to score from earlier probes (trust run alone, or its methods were not run):
            # explain the samples with the modality's own fallback method (or the requested ones).
            wanted = self.methods or [_FALLBACK[data.modality]]
            for name in wanted:
                if name not in registered_probes():
                    raise AuditError(f"Explanation trust cannot score {name!r}: no attribution probe has that name.", fix="Name attribution probes in methods.")
                probe = make_probe(name)
                if probe.category == "explanation" and probe.supports(model, data):
                    result = probe.run(model, data, context)
                    if isinstance(result, AttributionResult):
                        maps.append(result)
            if not maps:
                raise AuditError(
                    f"Explanation trust has no attribution maps to score: none of {wanted} ran before it or applies to this model.",
                    fix="Add attribution probes (e.g. saliency, integrated_gradients) to the audit spec, or drop explanation_trust.",
                )
            notes.append(f"No attribution probe ran before explanation trust, so it computed {', '.join(r.method for r in maps)} itself.")
        layers = parameter_layers(model.network)
        top_down = layers[::-1]
        stages = [top_down[: max(1, int(np.ceil(len(top_down) * (s + 1) / self.cascade_stages)))] for s in range(self.cascade_stages)] if layers else []
        # One randomized copy per cascade stage, shared by every method: they are judged against the same random model.
        stage_rng = context.rng(f"{self.name}:randomization")
        randomized = [randomized_copy(model, top, int(stage_rng.integers(2**31))) for top in stages]
        metrics: dict[str, dict[str, np.ndarray]] = {}
        cascade: dict[str, np.ndarray] = {}
        curves: dict[str, np.ndarray] = {}
        costs: dict[str, list[int]] = {}
        intervals: dict[str, dict[str, list[float]]] = {}
        description = ""
        reruns_per_sample = (
            len(stages) + int(self.random_logit and model.n_classes > 2) + (self.noise_draws if self.noise > 0 and data.modality != "text" else 0)
        )
        # Candidates for extra faithfulness samples, the same for every method (one per class first).
        candidates = select_samples(
            np.asarray(data.y), min(len(data), self.faithfulness_samples + len(context.sample_indices)), "stratified", context.rng(f"{self.name}:extra")
        )
        for i, r in enumerate(maps):
            context.report(i / len(maps), r.method)
            calls_before, rows_before = model.meter.snapshot()
            explained = np.asarray(r.sample_indices)
            per_sample = max(float(r.cost.rows_evaluated) / len(explained), 1.0)
            # Cheap maps: more samples, scored by re-running the method (budget: max_rerun_rows rows).
            room = int(self.max_rerun_rows // per_sample)
            extra = np.array(
                [c for c in candidates if c not in set(explained.tolist())][: max(0, min(self.faithfulness_samples - len(explained), room))], dtype=np.int64
            )
            scored_idx = np.concatenate([explained[: self.faithfulness_samples], extra])
            scored_targets = np.concatenate([np.asarray(r.targets)[: self.faithfulness_samples], context.predictions[extra]])
            n_rerun = min(len(scored_idx), max(self.n_samples, int(room // max(reruns_per_sample, 1))))
            rows = np.arange(n_rerun)
            all_features, pixel_ids, description = self._features(model, data, scored_idx)
            features = _rows(all_features, rows)
            own = len(scored_idx) - len(extra)
            parts = [self._as_features(r.attributions[:own], pixel_ids, _rows(all_features, slice(0, own)))]
            if len(extra):
                extra_maps = rerun(r, model, data, context, targets=context.predictions[extra], indices=extra)
                parts.append(self._as_features(extra_maps, pixel_ids, _rows(all_features, slice(own, None))))
            scored_maps = np.concatenate(parts)
            reference = scored_maps[rows]
            rng = context.rng(f"{self.name}:{r.method}")
            x = data.x[scored_idx]
            targets = scored_targets[rows]
            scores = faithfulness(
                model, x, scored_targets, scored_maps, all_features,
                steps=self.steps, n_random=self.n_random, corr_runs=self.corr_runs, corr_fraction=self.corr_fraction, rng=rng,
            )  # fmt: skip
            curves[r.method] = scores.pop("deletion_curve")
            values = dict(scores)
            values["sparseness"] = gini(scored_maps, all_features.valid)

            def again(label: str, handle, source, targets=targets, r=r, idx=scored_idx[rows], features=features, pixel_ids=pixel_ids) -> np.ndarray | None:
                """The method's maps re-run on ``handle`` and ``source`` (None, noted, when that fails)."""
                try:
                    return self._as_features(rerun(r, handle, source, context, targets=targets, indices=idx), pixel_ids, features)
                except Exception as exc:  # one check failing must not lose the method's other scores
                    notes.append(f"{r.method}: {label} could not be computed ({type(exc).__name__}: {exc})")
                    return None

            if stages:
                sims = []
                for shuffled in randomized:
                    got = again("model randomization", shuffled, data)
                    sims.append(spearman_abs(reference, got, features.valid) if got is not None else np.full(len(rows), np.nan))
                cascade[r.method] = np.stack(sims)
                values["model_randomization_similarity"] = sims[-1]
            # With two classes the other class's map is the negated map of a logit difference (same |map|),
            # so the random-logit check says nothing there.
            if self.random_logit and model.n_classes > 2:
                other = (targets + rng.integers(1, model.n_classes, size=len(targets))) % model.n_classes
                got = again("random-logit map", model, data, targets=other)
                if got is not None:
                    values["random_logit_similarity"] = spearman_abs(reference, got, features.valid)
            if self.noise_draws and self.noise > 0 and data.modality != "text":
                changes = []
                for _ in range(self.noise_draws):
                    noisy = self._noisy(model, data, scored_idx[rows], rng)
                    got = again("stability", model, noisy)
                    if got is not None:
                        changes.append(relative_change(reference, got, features.valid))
                if changes:
                    values["stability_max_change"] = np.max(changes, axis=0)
                    values["stability_mean_change"] = np.mean(changes, axis=0)
            metrics[r.method] = values
            intervals[r.method] = self._intervals(values, rng)
            calls_after, rows_after = model.meter.snapshot()
            costs[r.method] = [calls_after - calls_before, rows_after - rows_before]
        skill = cohen_kappa(context.predictions, data.y) if getattr(data, "y", None) is not None and len(context.proba) == len(data.y) else None
        if self.random_logit and model.n_classes <= 2:
            notes.append("No random-logit check: with two classes the other class's map mirrors the explained one.")
        if data.modality == "text" and self.noise_draws:
            notes.append("Text has no stability check: token ids cannot take small noise.")
        return TrustResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            methods=[r.method for r in maps],
            features=description,
            metrics=metrics,
            cascade=cascade,
            cascade_layers=stages,
            deletion_curves=curves,
            costs=costs,
            map_costs={r.method: [int(r.cost.model_calls), int(r.cost.rows_evaluated)] for r in maps},
            intervals=intervals,
            model_skill=None if skill is None else skill[0],
            model_skill_interval=None if skill is None else skill[1],
            notes=notes,
        )

    def _intervals(self, values: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, list[float]]:
        """95% bootstrap interval of each property value over the samples it rests on."""
        if not self.n_boot:
            return {}
        out = {prop: bootstrap_interval(values, prop, rng, self.n_boot) for prop in PROPERTIES}
        return {k: v for k, v in out.items() if v is not None}

    def _features(self, model: ModelHandle, data: AuditData, idx: np.ndarray) -> tuple[Features, np.ndarray | None, str]:
        """The features of the maps of data rows ``idx``, the pixel -> block ids (images) and a description."""
        x = data.x[idx]
        if data.modality == "image":
            channels, height, width = x.shape[1:]
            pixel_ids, n = image_blocks(height, width, self.max_features)
            lo = float(getattr(model.card.input, "value_range", (0.0, 1.0))[0])
            index = np.tile(pixel_ids, channels)
            side = int(np.ceil(np.sqrt(height * width / n)))
            what = f"{n} pixel blocks of about {side}x{side} (removed = {lo:g}, the black end of the value range)"
            return Features(index=index, baseline=np.full(index.shape, lo), n=n, valid=np.ones((len(idx), n), dtype=bool)), pixel_ids, what
        if data.modality == "tabular":
            index = np.full(x.shape[1], -1)
            for g, cols in enumerate(data.feature_groups):
                index[cols] = g
            n = len(data.feature_groups)
            return (
                Features(index=index, baseline=data.x.mean(axis=0), n=n, valid=np.ones((len(idx), n), dtype=bool)),
                None,
                f"{n} raw features (removed = column mean)",
            )
        tok = model.tokenizer
        fill = getattr(tok, "mask_token_id", None)
        fill = fill if fill is not None else getattr(tok, "pad_token_id", 0)
        length = x.shape[1]
        # Words, not tokens: the word pieces of one word leave and enter together (special tokens never do).
        texts = data.texts
        segments = player_segments(model, x, [texts[int(i)] for i in idx], "words")
        counts = segments.max(axis=1) + 1
        n = max(int(counts.max()) if len(counts) else 1, 1)
        valid = np.arange(n)[None, :] < counts[:, None]
        what = f"words (up to {n} per text; removed = token {fill} in each of the word's tokens)"
        return Features(index=segments, baseline=np.full(length, fill), n=n, valid=valid), None, what

    @staticmethod
    def _as_features(maps: np.ndarray, pixel_ids: np.ndarray | None, features: Features) -> np.ndarray:
        maps = np.asarray(maps)
        if features.index.ndim == 2:  # text: token maps (maybe cropped to the longest text) summed into each text's words
            width = features.index.shape[1]
            tokens = np.zeros((len(maps), width))
            w = min(width, maps.shape[1])
            tokens[:, :w] = maps.reshape(len(maps), -1)[:, :w]
            out = np.zeros((len(maps), features.n))
            if len(features.index) != len(maps):
                raise ValueError(f"{len(maps)} text maps but word positions of {len(features.index)} texts")
            for i, row in enumerate(features.index):
                keep = row >= 0
                out[i] = np.bincount(row[keep], weights=tokens[i, keep], minlength=features.n)[: features.n]
            return out
        return feature_maps(maps, pixel_ids, features.n)

    def _noisy(self, model: ModelHandle, data: AuditData, idx: np.ndarray, rng: np.random.Generator) -> AuditData:
        """``data`` with Gaussian noise on the rows ``idx`` (images clipped to the value range)."""
        x = data.x.copy()
        rows = x[idx].astype(np.float64)
        if data.modality == "image":
            lo, hi = getattr(model.card.input, "value_range", (0.0, 1.0))
            rows = np.clip(rows + rng.normal(0.0, self.noise * (hi - lo), rows.shape), lo, hi)
        else:
            numeric = np.concatenate([g for g in data.feature_groups if len(g) == 1]) if data.feature_groups else np.arange(x.shape[1])
            std = data.x[:, numeric].std(axis=0)
            rows[:, numeric] += rng.normal(0.0, 1.0, (len(rows), len(numeric))) * self.noise * std
        x[idx] = rows.astype(x.dtype)
        return dataclasses.replace(data, x=x)
