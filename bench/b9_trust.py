"""B9: explanation trust metrics against Quantus 0.6 on digits-cnn's own maps.

Same samples (32 stratified), same maps (our probes' outputs, plus a random map and the input
itself), same settings on both sides: faithfulness correlation (100 runs of 8 of 64 pixels,
black baseline, logits), pixel flipping / deletion AUC (one pixel per step, softmax), model
randomization with every layer randomized top-down (Spearman of |map|) and the random-logit map
(Spearman of |map|). Agreement is the Spearman correlation, over methods, of each metric's mean;
speed compares the two sides on the metrics without re-explanation (faithfulness correlation and
pixel flipping) and on the two randomization checks, each in one run.

Quantus is a benchmark-only dependency (``pip install 'audits[bench-trust]'``, with ``--no-deps``
so it cannot touch torch); it still calls ``np.trapz``, removed in numpy 2.4, so it is shimmed here.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy.stats import spearmanr

from audits.engine import select_samples
from audits.explain._trust_metrics import Features, faithfulness, spearman_abs
from audits.explain._trust_rerun import parameter_layers, randomized_copy
from audits.probes import RunContext, make_probe
from bench.harness import CaseResult, Check, Config, Row, zoo

CASE = "B9"
TITLE = "Explanation trust vs Quantus 0.6, digits-cnn: 9 maps x 32 samples, 4 metrics"
METHODS = ("grad_cam", "integrated_gradients", "saliency", "gradient_shap", "occlusion", "lime_image", "kernel_shap_image")
# metric -> (our key, Quantus metric name, which way is better)
METRICS = {
    "faithfulness_correlation": "FaithfulnessCorrelation",
    "deletion_auc": "PixelFlipping AUC",
    "model_randomization_similarity": "MPRT (all layers)",
    "random_logit_similarity": "RandomLogit",
}


def _quantus():
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # Quantus 0.6 still calls it
    import quantus

    return quantus


def _explainer(handle, data, method: str, seed: int):
    """A Quantus ``explain_func``: our probe on the given inputs and model, (n, 1, H, W)."""

    def explain(model, inputs, targets, **_) -> np.ndarray:
        inputs = np.asarray(inputs, dtype=np.float32)
        n = len(inputs)
        if method == "random":
            return np.random.default_rng(seed).normal(size=inputs.shape).astype(np.float32)
        if method == "input":
            return inputs.copy()
        h = dataclasses.replace(handle, model=model, network=model.net)
        d = dataclasses.replace(data, x=np.concatenate([inputs, data.x]), y=np.concatenate([np.asarray(targets), data.y]))
        proba = np.zeros((len(d.x), handle.n_classes), dtype=np.float32)
        proba[np.arange(n), np.asarray(targets, dtype=np.int64)] = 1.0
        ctx = RunContext(seed=seed, proba=proba, sample_indices=np.arange(n))
        return make_probe(method).run(h, d, ctx).attributions[:, None].astype(np.float32)

    return explain


def run(config: Config) -> CaseResult:
    q = _quantus()
    handle, data = zoo("digits-cnn")
    n = 8 if config.quick else 32
    idx = select_samples(data.y, n, "stratified", np.random.default_rng(config.seed))
    x, targets = data.x[idx], handle.predict_proba(data.x[idx]).argmax(axis=1)
    methods = (*METHODS, "random", "input")
    maps = {m: _explainer(handle, data, m, config.seed)(handle.model, x, targets)[:, 0] for m in methods}
    height, width = x.shape[2:]
    features = Features(index=np.arange(height * width), baseline=np.zeros(height * width), n=height * width, valid=np.ones((n, height * width), dtype=bool))
    ours: dict[str, dict[str, float]] = {m: {} for m in methods}
    theirs: dict[str, dict[str, float]] = {m: {} for m in methods}
    t_ours = {"faithfulness": 0.0, "randomization": 0.0}
    t_theirs = {"faithfulness": 0.0, "randomization": 0.0}
    all_layers = parameter_layers(handle.network)
    net = handle.model
    for m in methods:
        flat = maps[m].reshape(n, -1).astype(np.float64)
        start = time.perf_counter()
        got = faithfulness(
            handle, x, targets, flat, features,
            steps=height * width, n_random=0, corr_runs=100, corr_fraction=8 / 64, rng=np.random.default_rng(config.seed), insertion=False,
        )  # fmt: skip
        t_ours["faithfulness"] += time.perf_counter() - start
        ours[m]["faithfulness_correlation"] = float(np.nanmean(got["faithfulness_correlation"]))
        ours[m]["deletion_auc"] = float(np.nanmean(got["deletion_auc"]))

        start = time.perf_counter()
        fc = q.FaithfulnessCorrelation(nr_runs=100, subset_size=8, perturb_baseline="black", return_aggregate=False, disable_warnings=True)
        fcv = fc(model=net, x_batch=x, y_batch=targets, a_batch=maps[m][:, None], device=str(handle.device), softmax=False)
        pf = q.PixelFlipping(features_in_step=1, perturb_baseline="black", return_auc_per_sample=True, disable_warnings=True)
        pfv = pf(model=net, x_batch=x, y_batch=targets, a_batch=maps[m][:, None], device=str(handle.device), softmax=True)
        t_theirs["faithfulness"] += time.perf_counter() - start
        theirs[m]["faithfulness_correlation"] = float(np.nanmean(fcv))
        theirs[m]["deletion_auc"] = float(np.nanmean(pfv))

        explain = _explainer(handle, data, m, config.seed)
        start = time.perf_counter()
        shuffled = randomized_copy(handle, all_layers, config.seed)
        rand_map = explain(shuffled.model, x, targets)[:, 0].reshape(n, -1)
        ours[m]["model_randomization_similarity"] = float(np.nanmean(spearman_abs(flat, rand_map, features.valid)))
        other = (targets + np.random.default_rng(config.seed).integers(1, handle.n_classes, size=n)) % handle.n_classes
        logit_map = explain(handle.model, x, other)[:, 0].reshape(n, -1)
        ours[m]["random_logit_similarity"] = float(np.nanmean(spearman_abs(flat, logit_map, features.valid)))
        t_ours["randomization"] += time.perf_counter() - start

        start = time.perf_counter()
        mprt = q.MPRT(
            layer_order="top_down", similarity_func=q.similarity_func.correlation_spearman, abs=True, return_last_correlation=True, disable_warnings=True
        )
        mv = mprt(model=net, x_batch=x, y_batch=targets, a_batch=maps[m][:, None], explain_func=explain, device=str(handle.device))
        rl = q.RandomLogit(
            num_classes=handle.n_classes, similarity_func=q.similarity_func.correlation_spearman, abs=True, seed=config.seed, disable_warnings=True
        )
        rv = rl(model=net, x_batch=x, y_batch=targets, a_batch=maps[m][:, None], explain_func=explain, device=str(handle.device))
        t_theirs["randomization"] += time.perf_counter() - start
        theirs[m]["model_randomization_similarity"] = float(np.nanmean(mv))
        theirs[m]["random_logit_similarity"] = float(np.nanmean(rv))

    checks, notes = [], []
    for key, label in METRICS.items():
        a = [ours[m][key] for m in methods]
        b = [theirs[m][key] for m in methods]
        rho = float(spearmanr(a, b).statistic)
        checks.append(Check(CASE, f"{label}: method ranking agrees with Quantus (Spearman >= 0.8)", rho, rho >= 0.8))
        notes.append(f"{label}: Spearman {rho:.2f}; mean |ours - Quantus| {np.mean(np.abs(np.subtract(a, b))):.3f}")
    for part in ("faithfulness", "randomization"):
        ratio = t_theirs[part] / max(t_ours[part], 1e-9)
        checks.append(Check(CASE, f"{part}: at least 5x faster than Quantus", ratio, ratio >= 5 if part == "faithfulness" else None))
        notes.append(f"{part}: ours {t_ours[part]:.2f} s, Quantus {t_theirs[part]:.2f} s, ratio {ratio:.1f}x")
    header = "| method | " + " | ".join(f"{label} ours / Quantus" for label in METRICS.values()) + " |"
    table = [header, "|---" * (len(METRICS) + 1) + "|"]
    table += ["| " + m + " | " + " | ".join(f"{ours[m][k]:.2f} / {theirs[m][k]:.2f}" for k in METRICS) + " |" for m in methods]
    notes += table
    rows = [
        Row(case=CASE, contender="ours", wall_time_s=sum(t_ours.values()), model_calls=0, rows_evaluated=0, peak_memory_mb=0.0, quality={}, total_units=n, unit="samples"),
        Row(case=CASE, contender="quantus 0.6", wall_time_s=sum(t_theirs.values()), model_calls=0, rows_evaluated=0, peak_memory_mb=0.0, quality={}, total_units=n, unit="samples",
            ratio_to_ours=sum(t_theirs.values()) / max(sum(t_ours.values()), 1e-9)),
    ]  # fmt: skip
    return CaseResult(CASE, TITLE, rows, checks, notes)


if __name__ == "__main__":
    import sys

    result = run(Config(quick="--quick" in sys.argv))
    print(result.title)
    for c in result.checks:
        print(f"  {c.target}: {c.value:.2f} -> {c.met}")
    print("\n".join(result.notes))
