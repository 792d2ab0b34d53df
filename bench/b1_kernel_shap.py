"""B1: KernelSHAP on adult-mlp (12 raw features): ours vs shap's KernelExplainer vs captum's KernelShap.

Every contender explains P(>50K) of the same rows with the same 25 background rows, so
all estimate the same interventional Shapley values: shap on the raw features (categories
as level codes, decoded inside the function, as a notebook user would), captum on 12
interpretable on/off features whose "off" is the background (captum takes one baseline,
not a background sample, so the function averages over the background itself). Quality
is agreement with exact Shapley values from an independent brute force over all 4096
coalitions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import spearmanr

from audits.explain.base import background_rows
from audits.explain.kernel_shap import KernelShapTabular
from audits.probes import RunContext
from bench.harness import CaseResult, Check, Config, measure, set_ratios, zoo

CASE = "B1"
TITLE = "KernelSHAP, adult-mlp: 100 rows, 25 background rows, P(>50K)"
TARGET_CLASS = 1
N_BACKGROUND = 25


def codes_of(x: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Encoded rows -> raw features: numeric columns as they are, categories as level indices."""
    cols = [x[:, g[0]] if len(g) == 1 else np.where(x[:, g].any(axis=1), x[:, g].argmax(axis=1), -1) for g in groups]
    return np.stack(cols, axis=1).astype(np.float64)


def decode(z: np.ndarray, groups: list[np.ndarray], width: int) -> np.ndarray:
    """Raw features (as ``codes_of`` writes them) -> encoded rows."""
    out = np.zeros((len(z), width), dtype=np.float32)
    rows = np.arange(len(z))
    for j, g in enumerate(groups):
        if len(g) == 1:
            out[:, g[0]] = z[:, j]
        else:
            level = z[:, j].astype(np.int64)
            ok = level >= 0
            out[rows[ok], g[level[ok]]] = 1.0
    return out


def exact_shapley(model, x: np.ndarray, background: np.ndarray, groups: list[np.ndarray], target: int) -> np.ndarray:
    """Exact interventional Shapley values (n, M) by the subset formula over all 2^M coalitions.

    Independent of the probe: every coalition's value is the mean probability over the
    background with the coalition's features taken from the row; then
    phi_j = sum_{S not containing j} |S|! (M - |S| - 1)! / M! (v(S + j) - v(S)).
    """
    m = len(groups)
    codes = np.arange(2**m)
    member = ((codes[:, None] >> np.arange(m)) & 1).astype(bool)  # (2^M, M)
    column_feature = np.empty(x.shape[1], dtype=np.int64)
    for j, g in enumerate(groups):
        column_feature[g] = j
    keep = torch.as_tensor(member[:, column_feature])  # (2^M, D)
    bg = torch.as_tensor(background)
    size = member.sum(axis=1)
    weight = np.array([math.factorial(s) * math.factorial(m - s - 1) / math.factorial(m) if s < m else 0.0 for s in size])
    phi = np.zeros((len(x), m))
    with torch.inference_mode():
        for i, row in enumerate(torch.as_tensor(x)):
            values = np.empty(2**m)
            for start in range(0, 2**m, 512):
                k = keep[start : start + 512]
                rows = torch.where(k[:, None, :], row[None, None, :], bg[None]).reshape(-1, x.shape[1])
                p = torch.softmax(model.model(rows), dim=1)[:, target].double().reshape(len(k), len(bg)).mean(dim=1)
                values[start : start + len(k)] = p.numpy()
            for j in range(m):
                without = codes[~member[:, j]]
                phi[i, j] = (weight[without] * (values[without | (1 << j)] - values[without])).sum()
    return phi


def agreement(phi: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    rho = [spearmanr(a, b).statistic for a, b in zip(phi, exact, strict=True)]
    return {
        "spearman_mean": float(np.nanmean(rho)),
        "spearman_min": float(np.nanmin(rho)),
        "max_abs_error": float(np.abs(phi - exact).max()),
    }


def run(config: Config) -> CaseResult:
    model, data = zoo("adult-mlp")
    n_rows = 2 if config.quick else 100
    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.choice(len(data), size=n_rows, replace=False))
    proba = model.predict_proba(data.x)
    # The probe draws its background first from its own stream: take the very same rows.
    background = background_rows(data, N_BACKGROUND, RunContext(seed=config.seed, proba=proba, sample_indices=idx).rng("kernel_shap"))
    groups, width = data.feature_groups, data.x.shape[1]
    m = len(groups)
    exact = exact_shapley(model, data.x[idx], background, groups, TARGET_CLASS)
    meters = [model.meter]

    def ours(n: int) -> np.ndarray:
        context = RunContext(seed=config.seed, proba=proba, sample_indices=idx[:n])
        probe = KernelShapTabular(n_background=N_BACKGROUND, target=TARGET_CLASS, output="probability")
        return probe.run(model, data, context).attributions

    def shap_fn(z: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(model.model(torch.as_tensor(decode(z, groups, width))), dim=1)[:, TARGET_CLASS].numpy()

    def shap_kernel(**kwargs):
        def go(n: int) -> np.ndarray:
            import shap

            np.random.seed(config.seed)  # shap samples from numpy's global generator
            explainer = shap.KernelExplainer(shap_fn, codes_of(background, groups))
            return np.asarray(explainer.shap_values(codes_of(data.x[idx[:n]], groups), silent=True, **kwargs)).reshape(n, m)

        return go

    column_feature = torch.as_tensor(np.concatenate([np.full(len(g), j) for j, g in enumerate(groups)])[np.argsort(np.concatenate(groups))])
    bg_t = torch.as_tensor(background)

    def on_off(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """P(target) with the features 'on' in z taken from x and the rest from each background row, averaged."""
        keep = z[:, column_feature] > 0.5
        rows = torch.where(keep[:, None, :], x[:, None, :], bg_t[None]).reshape(-1, width)
        return torch.softmax(model.model(rows), dim=1)[:, TARGET_CLASS].reshape(len(z), -1).mean(dim=1)

    def captum_kernel(**kwargs):
        def go(n: int) -> np.ndarray:
            from captum.attr import KernelShap

            torch.manual_seed(config.seed)
            explainer = KernelShap(on_off)
            rows = torch.as_tensor(data.x[idx[:n]])
            # One example per call, as captum recommends (it loops over a batch the same way).
            return np.concatenate(
                [
                    explainer.attribute(torch.ones(1, m), baselines=torch.zeros(1, m), additional_forward_args=(rows[i : i + 1],), **kwargs).numpy()
                    for i in range(n)
                ]
            )

        return go

    budget = 2**m - 2
    contenders = [
        ("ours", ours, None, f"kernel_shap probe, exact (all {budget} coalitions), distinct rows only"),
        ("shap KernelExplainer (defaults)", shap_kernel(), 2, f"nsamples='auto' = {2 * m + 2048} coalitions per row, l1_reg keeps 10 features"),
        (f"shap KernelExplainer (nsamples={budget})", shap_kernel(nsamples=budget, l1_reg=False), 1, "our budget (every coalition), l1_reg=False"),
        ("captum KernelShap (defaults)", captum_kernel(), 3, "n_samples=25, perturbations_per_eval=1"),
        (f"captum KernelShap (n_samples={budget})", captum_kernel(n_samples=budget), 1, "our budget, perturbations_per_eval=1 (default)"),
    ]
    if config.quick:  # one model call per coalition: seconds per row even in a smoke run
        contenders = contenders[:-1]
    rows = []
    for name, fn, pilot, note in contenders:
        measured = measure(CASE, name, fn, units=n_rows, unit="rows", meters=meters, config=config, pilot=pilot, note=note)
        measured.row.quality = agreement(np.asarray(measured.output, dtype=np.float64), exact[: measured.units])
        rows.append(measured.row)
    set_ratios(rows)
    by = {r.contender: r for r in rows}
    ours_row = by["ours"]
    checks = [
        Check(CASE, ">= 10x faster than shap.KernelExplainer (defaults)", by["shap KernelExplainer (defaults)"].ratio_to_ours,
              (by["shap KernelExplainer (defaults)"].ratio_to_ours or 0) >= 10),
        Check(CASE, ">= 50x faster than captum KernelShap (defaults)", by["captum KernelShap (defaults)"].ratio_to_ours,
              (by["captum KernelShap (defaults)"].ratio_to_ours or 0) >= 50),
        Check(CASE, "rank agreement with exact Shapley >= 0.95 (mean Spearman)", ours_row.quality["spearman_mean"], ours_row.quality["spearman_mean"] >= 0.95),
    ]  # fmt: skip
    notes = [
        f"{n_rows} seeded rows of the 16,281 evaluation rows; exact Shapley values from a brute force over all {2**m} coalitions.",
        "captum is given the background through its forward function (12 on/off features); shap gets raw features with level codes.",
    ]
    return CaseResult(CASE, TITLE, rows, checks, notes)
