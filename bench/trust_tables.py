"""Trust tables of a zoo model like the issue's: our metrics per attribution method, plus a random map and the input itself.

``python -m bench.trust_tables adult-mlp`` (or ``digits-vit``, ``digits-cnn``) explains 32 stratified
samples with every default attribution method of the model's modality and scores them with
``explanation_trust`` at a raised budget: faithfulness correlation (100 subsets of 1/8 of the
features), deletion AUC one feature per step (pixels; raw tabular features), the pooled deletion
gain over random orderings, model randomization (every layer at once), random logit (more than two
classes), the worst change under 5% noise (3 draws) and Gini sparseness. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import time

import numpy as np

from audits.data import AuditData, load_data
from audits.engine import select_samples
from audits.explain.base import AttributionProbe
from audits.probes import PROBES, RunContext, make_probe, register
from audits.results import AttributionResult
from audits.spec import AuditSpec
from models.loader import ModelHandle, load_model
from models.registry import resolve_card


class RandomMap(AttributionProbe):
    """A map of Gaussian noise seeded by the input itself: faithful to nothing, new for every new input."""

    name = "random_map"
    modalities = ("image", "tabular")

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        x = data.x[context.sample_indices]
        shape = (data.n_features,) if data.modality == "tabular" else x.shape[1:]
        maps = [np.random.default_rng(int.from_bytes(hashlib.sha256(row.tobytes()).digest()[:8], "little")).normal(size=shape) for row in x]
        return self.result(model, data, context, np.stack(maps))


class InputMap(AttributionProbe):
    """The input itself as a map: insensitive to the model and the class."""

    name = "input_map"
    modalities = ("image", "tabular")

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> AttributionResult:
        return self.result(model, data, context, data.x[context.sample_indices].astype(np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for probe in (RandomMap, InputMap):
        if probe.name not in PROBES:
            register(probe)
    card = resolve_card(args.model)
    model, data = load_model(card, device="cpu"), load_data(card)
    proba = model.predict_proba(data.x)
    idx = select_samples(data.y, args.samples, "stratified", np.random.default_rng(args.seed))
    context = RunContext(seed=args.seed, proba=proba, sample_indices=idx)
    names = [p.name for p in AuditSpec().probe_specs(data.modality) if PROBES[p.name].category == "explanation"]
    maps = []
    for name in [*names, "random_map", "input_map"]:
        probe = make_probe(name)
        if probe.supports(model, data):
            result = probe.run(model, data, context)
            if isinstance(result, AttributionResult) and len(result.sample_indices):
                maps.append(result)
    n_features = data.n_features if data.modality == "tabular" else int(np.prod(data.x.shape[2:]))
    params = dict(
        n_samples=args.samples, faithfulness_samples=args.samples, steps=n_features, corr_runs=100, corr_fraction=0.125,
        cascade_stages=1, noise_draws=3, max_features=n_features, max_rerun_rows=0,
    )  # fmt: skip
    start = time.perf_counter()
    trust = make_probe("explanation_trust", params).run(model, data, dataclasses.replace(context, earlier=tuple(maps)))
    seconds = time.perf_counter() - start
    cols = [
        ("faithfulness_correlation", "faithfulness correlation ↑"),
        ("deletion_auc", "deletion AUC ↓"),
        ("faithfulness", "deletion gain (pooled) ↑"),
        ("model_randomization_similarity", "model randomization ↓"),
        ("random_logit_similarity", "random logit ↓"),
        ("stability_max_change", "worst change under noise ↓"),
        ("sparseness", "sparseness (Gini)"),
    ]
    print(f"{args.model}: {args.samples} stratified samples, seed {args.seed}, {trust.features}; trust {seconds:.1f} s")
    print("| method | " + " | ".join(c[1] for c in cols) + " | verdict (F/R/S) |")
    print("|---" * (len(cols) + 2) + "|")
    for m in trust.methods:
        cells = []
        for key, _ in cols:
            v = trust.property_value(m, key) if key == "faithfulness" else trust.mean(m, key)
            cells.append("-" if v is None else f"{v:.2f}")
        print(f"| {m} | " + " | ".join(cells) + " | " + "/".join(trust.verdict(m).values()) + " |")


if __name__ == "__main__":
    main()
