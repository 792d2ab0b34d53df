"""B6: the default audit of both zoo models, vs a notebook doing the same analyses with library defaults.

Ours is ``run_audit`` with the default spec (every default probe, report assembled). The
notebook does each analysis the way a user would with the peer libraries' defaults, on
the same explained samples and rows: captum for the gradient maps, occlusion and attacks
(captum.robust, one call per epsilon of the sweep), shap's KernelExplainer for KernelSHAP
(superpixels for images), lime for LIME, fairlearn's ``MetricFrame(n_boot=1000)`` for each
grouping the audit reports. Analyses no peer library does (corruption suite, calibration,
tabular perturbations and attacks, counterfactual flips, mitigation preview, proxies,
attribution disparity) are charged at our own probe's cost. Each notebook step has the
time budget; over it, it is measured on a subset and extrapolated.

The floor is the model passes our audit made, at the model's best batched throughput:
rows evaluated without gradients / best forward rows per second, plus rows evaluated with
an input gradient / best forward+backward rows per second (batch sizes 64 ... 16384).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from audits.engine import run_audit
from audits.explain._masking import image_baseline, superpixels
from audits.explain.base import background_rows
from audits.report import AuditReport
from audits.robustness._attacks import LINF_SWEEP
from audits.spec import AuditSpec
from bench.b1_kernel_shap import codes_of, decode
from bench.harness import CaseResult, Check, Config, PeakRSS, Row, measure, release_freed_memory, set_ratios, zoo

CASE = "B6"
TITLE = "End to end: the default audit of digits-cnn and adult-mlp vs a notebook of library defaults"
FLOOR_BATCHES = (64, 256, 1024, 4096, 16384)


@dataclass
class Step:
    name: str
    run: Callable[[int], object] | None  # None: charged at our probe's cost
    units: int
    unit: str
    pilot: int | None = None
    probe: str = ""


class GradRows:
    """Counts rows through the audited model with and without an input gradient (a forward pre-hook)."""

    def __init__(self, model) -> None:
        self.grad = self.plain = 0
        self._handle = model.model.register_forward_pre_hook(self._count)

    def _count(self, _module, args) -> None:
        x = args[0]
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad:
            self.grad += int(x.shape[0])
        else:
            self.plain += int(x.shape[0])

    def close(self) -> None:
        self._handle.remove()


def best_throughput(model, x: np.ndarray, quick: bool = False) -> tuple[float, float, int, int]:
    """Best forward and forward+backward rows per second over batch sizes (and those sizes)."""
    batches = FLOOR_BATCHES[:3] if quick else FLOOR_BATCHES
    rows = torch.as_tensor(np.resize(x, (batches[-1], *x.shape[1:])))
    best_f, best_b = (0.0, 0), (0.0, 0)
    for b in batches:
        for grad in (False, True):
            times = []
            for _ in range(1 if quick else 3):
                start = time.perf_counter()
                for i in range(0, len(rows), b):
                    chunk = rows[i : i + b]
                    if grad:
                        with torch.enable_grad():
                            xi = chunk.clone().requires_grad_(True)
                            torch.autograd.grad(model.model(xi)[:, 0].sum(), xi)
                    else:
                        with torch.inference_mode():
                            model.model(chunk)
                times.append(time.perf_counter() - start)
            rate = len(rows) / min(times)
            if grad and rate > best_b[0]:
                best_b = (rate, b)
            if not grad and rate > best_f[0]:
                best_f = (rate, b)
    return best_f[0], best_b[0], best_f[1], best_b[1]


def _quiet(fn: Callable[[], object]) -> object:
    with contextlib.redirect_stderr(io.StringIO()):  # lime's and shap's progress bars
        return fn()


def image_steps(model, data, report: AuditReport, quick: bool) -> list[Step]:
    idx = report.explanations[0].sample_indices
    x = torch.as_tensor(data.x[idx])
    t = torch.as_tensor(report.explanations[0].targets)
    _, layer = model.cam_layer()
    background = torch.as_tensor(background_rows(data, 32, np.random.default_rng(0)))
    attack_rows = np.arange(min(len(data), 512))
    xa, ya = torch.as_tensor(data.x[attack_rows]), torch.as_tensor(data.y[attack_rows], dtype=torch.long)
    sweep = [e for e in LINF_SWEEP if e > 0]

    def captum(make):
        return lambda n: make()(x[:n], t[:n])

    def shap_superpixels(n: int):
        import shap

        out = []
        for i in range(n):
            seg = superpixels(data.x[idx[i : i + 1]], 16)[0]
            base = image_baseline(data.x[idx[i : i + 1]], "mean")[0]
            m = int(seg.max()) + 1

            def f(z: np.ndarray, seg=seg, base=base, i=i) -> np.ndarray:
                imgs = np.where(z[:, seg][:, None].astype(bool), data.x[idx[i]][None], base[None]).astype(np.float32)
                with torch.inference_mode():
                    return torch.softmax(model.model(torch.as_tensor(imgs)), dim=1)[:, int(t[i])].numpy()

            out.append(shap.KernelExplainer(f, np.zeros((1, m))).shap_values(np.ones((1, m)), silent=True))
        return out

    def lime_images(n: int):
        from lime import lime_image

        def classify(images: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return torch.softmax(model.model(torch.as_tensor(np.asarray(images, dtype=np.float32)[..., 0][:, None])), dim=1).numpy()

        explainer = lime_image.LimeImageExplainer(random_state=0)
        return [_quiet(lambda i=i: explainer.explain_instance(data.x[idx[i], 0].astype(np.float64), classify, random_seed=0)) for i in range(n)]

    def attack_sweep(kind: str):
        def go(n: int):
            from captum.robust import FGSM, PGD

            accs = []
            for eps in sweep[:n]:
                if kind == "fgsm":
                    adv = FGSM(model.model, lower_bound=0.0, upper_bound=1.0).perturb(xa, epsilon=eps, target=ya)
                else:
                    adv = PGD(model.model, lower_bound=0.0, upper_bound=1.0).perturb(
                        xa, radius=eps, step_size=eps / 4, step_num=10, target=ya, random_start=True
                    )
                with torch.inference_mode():
                    accs.append(float((model.model(adv).argmax(dim=1) == ya).float().mean()))
            return accs

        return go

    from captum.attr import GradientShap, IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency

    n = len(idx)
    return [
        Step(
            "captum LayerGradCam",
            captum(lambda: lambda a, b: LayerAttribution.interpolate(LayerGradCam(model.model, layer).attribute(a, target=b), (8, 8))),
            n,
            "images",
            probe="grad_cam",
        ),
        Step(
            "captum IntegratedGradients",
            captum(lambda: lambda a, b: IntegratedGradients(model.model).attribute(a, target=b)),
            n,
            "images",
            probe="integrated_gradients",
        ),
        Step("captum Saliency", captum(lambda: lambda a, b: Saliency(model.model).attribute(a, target=b)), n, "images", probe="saliency"),
        Step(
            "captum GradientShap",
            captum(lambda: lambda a, b: GradientShap(model.model).attribute(a, baselines=background, target=b)),
            n,
            "images",
            probe="gradient_shap",
        ),
        Step(
            "captum Occlusion",
            captum(lambda: lambda a, b: Occlusion(model.model).attribute(a, sliding_window_shapes=(1, 2, 2), target=b)),
            n,
            "images",
            probe="occlusion",
        ),
        Step("shap KernelExplainer on superpixels", shap_superpixels, n, "images", pilot=1, probe="kernel_shap_image"),
        Step("lime LimeImageExplainer", lime_images, n, "images", pilot=1, probe="lime_image"),
        Step("captum.robust FGSM sweep", attack_sweep("fgsm"), len(sweep), "epsilons", probe="fgsm"),
        Step("captum.robust PGD sweep", attack_sweep("pgd"), len(sweep), "epsilons", pilot=1, probe="pgd"),
    ]


def tabular_steps(model, data, report: AuditReport, quick: bool) -> list[Step]:
    idx = report.explanations[0].sample_indices
    groups, width = data.feature_groups, data.x.shape[1]
    rng = np.random.default_rng(0)
    background = background_rows(data, 25, rng)
    x = torch.as_tensor(data.x[idx])
    t = torch.as_tensor(report.explanations[0].targets)
    mean_row = torch.as_tensor(background_rows(data, 100, rng).mean(axis=0, keepdims=True))
    codes = codes_of(data.x, groups)
    categorical = [j for j, g in enumerate(groups) if len(g) > 1]

    def proba_of_codes(z: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(model.model(torch.as_tensor(decode(z, groups, width))), dim=1).numpy()

    def ig(n: int):
        from captum.attr import IntegratedGradients

        return IntegratedGradients(model.model).attribute(x[:n], baselines=mean_row, target=t[:n])

    def kernel(n: int):
        import shap

        explainer = shap.KernelExplainer(lambda z: proba_of_codes(z)[:, 1], codes_of(background, groups))
        return explainer.shap_values(codes[idx[:n]], silent=True)

    def lime_rows(n: int):
        from lime.lime_tabular import LimeTabularExplainer

        explainer = LimeTabularExplainer(codes, categorical_features=categorical, feature_names=list(data.feature_names), random_state=0)
        return [explainer.explain_instance(codes[idx[i]], proba_of_codes) for i in range(n)]

    n = len(idx)
    return [
        Step("captum IntegratedGradients", ig, n, "rows", probe="integrated_gradients"),
        Step("shap KernelExplainer", kernel, n, "rows", pilot=2, probe="kernel_shap"),
        Step("lime LimeTabularExplainer", lime_rows, n, "rows", pilot=2, probe="lime"),
    ]


def fairlearn_steps(data, report: AuditReport, proba: np.ndarray, n_boot: int, quick: bool = False) -> list[Step]:
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score

    result = next(r for r in report.fairness if r.method == "group_metrics")
    y_pred = proba.argmax(axis=1)
    if result.task == "binary":
        metrics = {
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "precision": precision_score,
        }
    else:
        metrics = {"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score}
    steps = []
    for grouping in result.groupings[:1] if quick else result.groupings:  # a smoke run measures one grouping
        features = data.attributes[grouping.split(" x ")].astype(str)

        def go(n: int, features=features):
            return MetricFrame(metrics=metrics, y_true=data.y, y_pred=y_pred, sensitive_features=features, n_boot=n or None,
                               ci_quantiles=[0.025, 0.975] if n else None, random_state=0)  # fmt: skip

        steps.append(Step(f"fairlearn MetricFrame(n_boot={n_boot}) [{grouping}]", go, n_boot, "resamples", pilot=None if quick else 2, probe="group_metrics"))
    return steps


def run(config: Config) -> CaseResult:
    spec = AuditSpec(max_rows=150, samples=2) if config.quick else AuditSpec()
    n_boot = 2 if config.quick else 1000
    step_config = Config(quick=config.quick, budget_s=min(config.budget_s, 5.0 if config.quick else 30.0), repeats=1, seed=config.seed)
    rows: list[Row] = []
    notes: list[str] = []
    totals = {"ours": 0.0, "notebook": 0.0, "floor": 0.0}
    for name in ("digits-cnn", "adult-mlp"):
        model, full = zoo(name)
        ours_time = float("inf")
        for _ in range(1 if config.quick else 2):  # best of two: the machine may be shared
            release_freed_memory()
            counter = GradRows(model)
            before = model.meter.snapshot()
            with PeakRSS() as rss:
                start = time.perf_counter()
                report = run_audit(model, full, spec)
                ours_time = min(ours_time, time.perf_counter() - start)
            counter.close()
            calls, seen = model.meter.calls - before[0], model.meter.rows - before[1]
        data = full if report.data_summary.row_indices is None else full.subset(report.data_summary.row_indices)
        fwd, fwdbwd, fb, bb = best_throughput(model, data.x, quick=config.quick)
        floor = counter.plain / fwd + counter.grad / fwdbwd
        rows.append(Row(CASE, "ours", ours_time, calls, seen, rss.growth_mb, measured_units=1, total_units=1, unit="audit", measured_time_s=ours_time,
                        group=name, note=f"run_audit, default spec ({len(report.probe_results())} probes)"))  # fmt: skip
        rows.append(Row(CASE, "floor", floor, 0, counter.plain + counter.grad, 0.0, group=name,
                        note=f"{counter.plain:,} forward rows at {fwd:,.0f}/s (batch {fb}) + {counter.grad:,} gradient rows at {fwdbwd:,.0f}/s (batch {bb})"))  # fmt: skip
        costs = {r.method: r.cost.wall_time_s for r in report.probe_results()}
        proba = model.predict_proba(data.x)
        steps = image_steps(model, data, report, config.quick) if data.modality == "image" else tabular_steps(model, data, report, config.quick)
        steps += fairlearn_steps(data, report, proba, n_boot, quick=config.quick)
        covered = {s.probe for s in steps}
        notebook_time, notebook_calls, notebook_rows, breakdown, extrapolated = 0.0, 0.0, 0.0, [], False
        for step in steps:
            if step.probe not in costs:
                continue
            m = measure(CASE, step.name, step.run, units=step.units, unit=step.unit, meters=[model.meter], config=step_config, pilot=step.pilot)
            notebook_time += m.row.wall_time_s
            notebook_calls += m.row.model_calls
            notebook_rows += m.row.rows_evaluated
            extrapolated |= m.row.extrapolated
            breakdown.append(
                f"{step.name} {m.row.wall_time_s:.2f}s"
                + (f" (extrapolated from {m.row.measured_units} of {m.row.total_units} {m.row.unit})" if m.row.extrapolated else "")
            )
        charged = {p: c for p, c in costs.items() if p not in covered}
        notebook_time += sum(charged.values())
        note = (
            "library defaults"
            + ("; some steps extrapolated from subsets (see notes)" if extrapolated else "")
            + f"; {len(charged)} analyses without a library default charged at our cost"
        )
        rows.append(Row(CASE, "notebook", notebook_time, notebook_calls, notebook_rows, 0.0, group=name, extrapolated=extrapolated, note=note))
        notes.append(f"{name} notebook steps: " + "; ".join(breakdown))
        notes.append(f"{name} charged at our cost: " + ", ".join(f"{p} {c:.2f}s" for p, c in charged.items()))
        totals["ours"] += ours_time
        totals["notebook"] += notebook_time
        totals["floor"] += floor
    rows.append(Row(CASE, "ours", totals["ours"], sum(r.model_calls for r in rows if r.contender == "ours"), sum(r.rows_evaluated for r in rows if r.contender == "ours"),
                    max(r.peak_memory_mb for r in rows if r.contender == "ours"), group="both models", note="sum of the two audits"))  # fmt: skip
    rows.append(
        Row(
            CASE, "floor", totals["floor"], 0, sum(r.rows_evaluated for r in rows if r.contender == "floor"), 0.0, group="both models", note="sum of the floors"
        )
    )
    partly = any(r.extrapolated for r in rows if r.contender == "notebook")
    rows.append(Row(CASE, "notebook", totals["notebook"], sum(r.model_calls for r in rows if r.contender == "notebook"),
                    sum(r.rows_evaluated for r in rows if r.contender == "notebook"), 0.0, group="both models", extrapolated=partly,
                    note="sum of the two notebooks" + ("; some steps extrapolated from subsets" if partly else "")))  # fmt: skip
    set_ratios(rows)
    speedup = totals["notebook"] / totals["ours"]
    over_floor = totals["ours"] / totals["floor"] if totals["floor"] > 0 else float("inf")
    checks = [
        Check(CASE, ">= 5x faster than the notebook (both models)", speedup, speedup >= 5),
        Check(CASE, "<= 2x the sum of the floors (ours / floor, both models)", over_floor, over_floor <= 2),
    ]
    notes.insert(
        0,
        f"spec: {spec.model_dump(exclude_none=True)}; notebook budget per step {step_config.budget_s:g}s; our audit: best of {1 if config.quick else 2} runs per model.",
    )
    return CaseResult(CASE, TITLE, rows, checks, notes)
