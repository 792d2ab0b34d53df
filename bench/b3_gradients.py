"""B3: gradient attributions on 256 digits-cnn images: ours vs the floor vs captum called directly.

The floor is hand-written batched torch doing exactly the passes each method needs
(Grad-CAM: one forward and backward of the images; IG: one forward and backward of
n_steps x images path points; GradientSHAP: one of n_samples x images random points), timed
at the best of a few batch sizes. captum is called once on all images, as its docs do.
pytorch-grad-cam is not compared: it imports torchvision and OpenCV, which are not
installed here (there is no CPU torchvision build to match torch 2.13 on this machine).
Quality is agreement with the floor's attributions (max |difference| relative to the
floor's largest value, and correlation; GradientSHAP draws random points, so only the
correlation is meaningful there).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GradientShap as CaptumGradientShap
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerAttribution, LayerGradCam
from captum.attr._utils.approximation_methods import approximation_parameters

from audits.explain.base import background_rows
from audits.explain.grad_cam import GradCAM
from audits.explain.gradient_shap import GradientShap
from audits.explain.integrated_gradients import IntegratedGradients
from audits.probes import RunContext
from bench.harness import CaseResult, Check, Config, Row, measure, set_ratios, zoo

CASE = "B3"
TITLE = "Gradient attributions, digits-cnn: 256 images (Grad-CAM, IG 50 steps, GradientSHAP 16 samples)"
N_STEPS = 50
N_SAMPLES = 16
N_BACKGROUND = 32
FLOOR_BATCHES = (256, 64, 16)  # images per pass tried for the floor


def _target(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, t[:, None])[:, 0]


def floor_grad_cam(model, layer: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Grad-CAM by hand: hook the layer, one forward and backward, channel weights, ReLU, bilinear upsampling."""
    captured = []
    hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)  # a graph to the activations; parameters stay frozen
            score = _target(model.model(xi), t)
            (grads,) = torch.autograd.grad(score.sum(), captured[0])
    finally:
        hook.remove()
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * captured[0].detach()).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear")


def floor_ig(model, x: torch.Tensor, t: torch.Tensor, base: torch.Tensor, n_steps: int) -> torch.Tensor:
    """IG by hand with captum's Gauss-Legendre points: one forward and backward of n_steps x images."""
    step_sizes, alphas = (torch.as_tensor(v(n_steps), dtype=x.dtype) for v in approximation_parameters("gausslegendre"))
    shape = (n_steps,) + (1,) * x.ndim
    with torch.enable_grad():
        points = (base + alphas.view(shape) * (x - base)[None]).reshape(-1, *x.shape[1:]).requires_grad_(True)
        score = _target(model.model(points), t.repeat(n_steps))
        (grads,) = torch.autograd.grad(score.sum(), points)
    return (grads.view(n_steps, *x.shape) * step_sizes.view(shape)).sum(dim=0) * (x - base)


def floor_gradient_shap(
    model, x: torch.Tensor, t: torch.Tensor, background: torch.Tensor, n_samples: int, stdev: float, generator: torch.Generator
) -> torch.Tensor:
    """GradientSHAP by hand: n_samples random points per image between a noisy copy and a random baseline."""
    n = len(x)
    rep = x.repeat_interleave(n_samples, dim=0)
    noisy = rep + stdev * torch.randn(rep.shape, generator=generator)
    base = background[torch.randint(len(background), (len(rep),), generator=generator)]
    alpha = torch.rand(len(rep), generator=generator).view(-1, *(1,) * (x.ndim - 1))
    with torch.enable_grad():
        points = (base + alpha * (noisy - base)).requires_grad_(True)
        score = _target(model.model(points), t.repeat_interleave(n_samples))
        (grads,) = torch.autograd.grad(score.sum(), points)
    return (grads * (noisy - base)).view(n, n_samples, *x.shape[1:]).mean(dim=1)


def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], batch: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda x, t: torch.cat([fn(x[i : i + batch], t[i : i + batch]) for i in range(0, len(x), batch)])


def agreement(got: np.ndarray, floor: np.ndarray) -> dict[str, float]:
    got, floor = got.reshape(len(got), -1), floor.reshape(len(floor), -1)
    scale = float(np.abs(floor).max()) or 1.0
    return {"max_rel_diff_vs_floor": float(np.abs(got - floor).max() / scale), "corr_vs_floor": float(np.corrcoef(got.ravel(), floor.ravel())[0, 1])}


def run(config: Config) -> CaseResult:
    model, data = zoo("digits-cnn")
    n_images = 16 if config.quick else 256
    rng = np.random.default_rng(config.seed)
    idx = np.sort(rng.choice(len(data), size=n_images, replace=False))
    proba = model.predict_proba(data.x)
    context = RunContext(seed=config.seed, proba=proba, sample_indices=idx)
    x = torch.as_tensor(data.x[idx])
    t = torch.as_tensor(proba.argmax(axis=1)[idx])
    _, layer = model.cam_layer()
    zeros = torch.zeros_like(x[:1])
    background = torch.as_tensor(background_rows(data, N_BACKGROUND, context.rng("gradient_shap")))
    stdev = GradientShap().noise_std(model)
    meters = [model.meter]

    def ours(probe):
        return lambda n: probe.run(model, data, RunContext(seed=config.seed, proba=proba, sample_indices=idx[:n])).attributions

    def as_map(a: torch.Tensor) -> np.ndarray:
        return a.detach().sum(dim=1).numpy()  # channels summed, as the probes report

    methods = {
        "grad_cam": {
            "ours": ours(GradCAM()),
            "floor": lambda b: batched(lambda xi, ti: floor_grad_cam(model, layer, xi, ti), b),
            "captum": lambda xi, ti: LayerAttribution.interpolate(
                LayerGradCam(model.model, layer).attribute(xi, target=ti, relu_attributions=True), tuple(xi.shape[2:]), "bilinear"
            ),
            "deterministic": True,
        },
        "integrated_gradients": {
            "ours": ours(IntegratedGradients(n_steps=N_STEPS)),
            "floor": lambda b: batched(lambda xi, ti: floor_ig(model, xi, ti, zeros, N_STEPS), b),
            "captum": lambda xi, ti: CaptumIG(model.model).attribute(xi, baselines=zeros, target=ti, n_steps=N_STEPS),
            "deterministic": True,
        },
        "gradient_shap": {
            "ours": ours(GradientShap(n_background=N_BACKGROUND, n_samples=N_SAMPLES)),
            "floor": lambda b: batched(
                lambda xi, ti: floor_gradient_shap(model, xi, ti, background, N_SAMPLES, stdev, torch.Generator().manual_seed(config.seed)), b
            ),
            "captum": lambda xi, ti: CaptumGradientShap(model.model).attribute(xi, baselines=background, n_samples=N_SAMPLES, stdevs=stdev, target=ti),
            "deterministic": False,
        },
    }
    repeats = config.repeats if config.quick else max(config.repeats, 5)
    quick_config = Config(quick=config.quick, budget_s=config.budget_s, repeats=repeats, seed=config.seed)
    rows: list[Row] = []
    checks = []
    for method, spec in methods.items():
        # The floor at its best batch size (images per pass).
        best = None
        for b in FLOOR_BATCHES:
            fn = spec["floor"](min(b, n_images))
            m = measure(
                CASE, "floor", lambda n, fn=fn: as_map(fn(x[:n], t[:n])), units=n_images, unit="images", meters=meters, config=quick_config, group=method
            )
            if best is None or m.row.wall_time_s < best[0].row.wall_time_s:
                best = (m, b)
        floor, batch = best
        floor.row.note = f"hand-written torch, {min(batch, n_images)} images per pass (best of {', '.join(map(str, FLOOR_BATCHES))})"
        reference = floor.output
        ours_m = measure(CASE, "ours", spec["ours"], units=n_images, unit="images", meters=meters, config=quick_config, group=method, note=f"{method} probe")
        captum_m = measure(CASE, "captum", lambda n, fn=spec["captum"]: as_map(fn(x[:n], t[:n])), units=n_images, unit="images", meters=meters,
                           config=quick_config, group=method, note="captum called once on all images")  # fmt: skip
        for m in (ours_m, floor, captum_m):
            m.row.quality = agreement(np.asarray(m.output), reference)
            if not spec["deterministic"]:
                m.row.quality.pop("max_rel_diff_vs_floor")
        rows += [ours_m.row, floor.row, captum_m.row]
        ratio = ours_m.row.wall_time_s / floor.row.wall_time_s
        checks.append(Check(CASE, f"{method}: <= 1.3x the floor (ours / floor)", ratio, ratio <= 1.3))
    set_ratios(rows)
    notes = [
        f"{n_images} seeded images of 719, target = predicted class, logit output; IG baseline zeros; GradientSHAP: {N_BACKGROUND} background images, noise std {stdev:g}.",
        f"Each time is the best of {repeats} runs. Ours includes what the probe reports besides the map (f(x), baseline outputs, completeness).",
        "pytorch-grad-cam not compared: it needs torchvision and OpenCV, not installed here.",
    ]
    return CaseResult(CASE, TITLE, rows, checks, notes)
