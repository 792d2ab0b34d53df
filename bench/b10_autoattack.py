"""B10: AutoAttack at full strength, digits-cnn: our ``strong`` preset vs torchattacks' AutoAttack (standard).

Both attack the same seeded images at L-inf 8/255, 16/255 and 0.1 and report robust
accuracy per epsilon (a row is robust when it is right on the clean image and no attack
of the ensemble broke it). torchattacks' standard version runs APGD-CE, APGD-T (9
targets), FAB-T (9 targets) and Square (5000 queries), one epsilon at a time, each attack
on the rows the ones before it left standing; ours runs APGD-CE, APGD-T (9 targets) and
Square (5000 queries) with every epsilon in one batch. Each contender runs once in full
(no subset extrapolation: the robust accuracies must come from the same images).

torchattacks is a benchmark-only dependency (the ``bench`` extra): install it with
``pip install --no-deps torchattacks==3.5.1``; its metadata asks for torchvision and a
CUDA torch, but its code never imports torchvision.
"""

from __future__ import annotations

import numpy as np
import torch

from audits.probes import RunContext
from audits.robustness.autoattack import AutoAttack
from bench.harness import CaseResult, Check, Config, Row, measure, set_ratios, zoo

CASE = "B10"
TITLE = "AutoAttack, digits-cnn: strong preset vs torchattacks AutoAttack(standard), L-inf 8/255, 16/255, 0.1"
EPSILONS = (8 / 255, 16 / 255, 0.1)
QUICK_QUERIES = 300  # --quick (the smoke run): Square's queries on both sides, 16 images


def run(config: Config) -> CaseResult:
    model, data = zoo("digits-cnn")
    n_images = 16 if config.quick else 100
    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.choice(len(data), size=n_images, replace=False))
    subset = data.subset(idx)
    x = torch.as_tensor(subset.x).to(model.device)
    y = torch.as_tensor(subset.y, dtype=torch.long, device=model.device)
    meters = [model.meter]
    once = Config(quick=config.quick, budget_s=float("inf"), repeats=1, seed=config.seed)
    proba = model.predict_proba(subset.x)  # the audit's shared forward pass, not timed
    clean = float((proba.argmax(axis=1) == subset.y).mean())

    def ours(n: int) -> list[float]:
        probe = AutoAttack(preset="strong", epsilons=list(EPSILONS), max_rows=None, queries=QUICK_QUERIES if config.quick else None)
        context = RunContext(seed=config.seed, proba=proba[:n], sample_indices=np.zeros(0, dtype=np.int64))
        result = probe.run(model, subset.subset(np.arange(n)), context)
        return [float(v) for v in result.curve["robust_accuracy"]]

    def reference(n: int) -> list[float]:
        import torchattacks

        out = []
        for eps in EPSILONS:
            attack = torchattacks.AutoAttack(model.model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=config.seed)
            if config.quick:
                attack._autoattack.attacks[-1].n_queries = QUICK_QUERIES
            adv = attack(x[:n], y[:n])
            with torch.inference_mode():
                clean_ok = model.model(x[:n]).argmax(dim=1) == y[:n]
                robust = clean_ok & (model.model(adv).argmax(dim=1) == y[:n])
            out.append(float(robust.float().mean()))
        return out

    ours_m = measure(CASE, "ours", ours, units=n_images, unit="images", meters=meters, config=once,
                     note="autoattack probe, preset strong (APGD-CE, APGD-T 9 targets, Square 5000); all epsilons in one batch")  # fmt: skip
    rows: list[Row] = [ours_m.row]
    checks: list[Check] = []
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        checks.append(Check(CASE, "torchattacks installed (pip install --no-deps torchattacks==3.5.1)", None, False))
        ours_m.row.quality = {f"robust_accuracy@{e:.4g}": v for e, v in zip(EPSILONS, ours_m.output, strict=True)} | {"clean_accuracy": clean}
        return CaseResult(CASE, TITLE, rows, checks, [f"{n_images} seeded images; torchattacks missing, reference not run."])
    ref_m = measure(CASE, "torchattacks.AutoAttack(standard)", reference, units=n_images, unit="images", meters=meters, config=once,
                    note="APGD-CE, APGD-T, FAB-T, Square 5000; one epsilon at a time; clean forward included")  # fmt: skip
    for m in (ours_m, ref_m):
        m.row.quality = {f"robust_accuracy@{e:.4g}": v for e, v in zip(EPSILONS, m.output, strict=True)} | {"clean_accuracy": clean}
    rows.append(ref_m.row)
    set_ratios(rows)
    gap = max(abs(a - b) for a, b in zip(ours_m.output, ref_m.output, strict=True))
    ratio = ours_m.row.wall_time_s / ref_m.row.wall_time_s
    checks.append(Check(CASE, "robust accuracy within 0.01 of torchattacks at every epsilon (largest gap)", gap, gap <= 0.01 + 1e-9))
    checks.append(Check(CASE, "at most 1/3 of torchattacks' time (ours / torchattacks)", ratio, ratio <= 1 / 3))
    notes = [
        f"{n_images} seeded images of {len(data)}; labels are the true digits; value range [0, 1]; each contender run once.",
        "Robust accuracy per epsilon in the quality columns; ratio_to_ours > 1 means torchattacks is slower.",
    ]
    return CaseResult(CASE, TITLE, rows, checks, notes)
