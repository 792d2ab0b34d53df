"""Feature visualization: inputs optimised to excite each class and a few channels, and the evaluation images that do."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch

from audits.errors import AuditError
from audits.explain._layers import captured_output, concept_layer
from audits.probes import Probe, RunContext, register
from audits.results.concepts import FeatureVisualizationResult

if TYPE_CHECKING:
    from collections.abc import Callable

    from audits.data import AuditData
    from models.loader import ModelHandle


@register
class FeatureVisualization(Probe):
    """Activation maximisation (Erhan et al., 2009; Olah et al., 2017) for every class and ``n_channels`` channels.

    One batch of images, one per class (and one per channel), is optimised by Adam for
    ``steps`` steps to raise the class logit (or the channel's mean activation at ``layer``,
    default the Grad-CAM layer, see :func:`audits.explain._layers.concept_layer`). The pixels
    are ``lo + (hi - lo) * sigmoid(z)``, so they stay in the card's value range; with
    ``parameterization='fourier'`` ``z`` is the inverse FFT of a spectrum scaled by 1/frequency
    (a decorrelated parameterisation: every frequency learns at a similar pace, so noise does
    not dominate). Each step the model sees the image shifted by up to ``jitter`` pixels
    (wrapping) and blurred by a Gaussian of ``blur`` pixels: features that survive small shifts
    and blur are the model's, not high-frequency adversarial patterns. The channels shown are
    those with the highest mean activation over the evaluation rows; the top evaluation images
    are the ``top_k`` rows (of at most ``max_rows``) with the highest class logit or channel
    activation.
    """

    name = "feature_visualization"
    category: ClassVar = "concepts"
    result_type = FeatureVisualizationResult
    modalities = ("image",)
    default_for = ("image",)
    title = "Feature visualization"
    description = (
        "Optimises an input image for each class (and for a few channels of the target layer) to excite it as much as possible, regularised by "
        "jitter, blur and a decorrelated Fourier parameterisation, and shows next to it the evaluation images that excite it most."
    )

    def __init__(
        self,
        *,
        steps: int = 64,
        learning_rate: float = 0.1,
        jitter: int = 1,
        blur: float = 0.5,
        parameterization: Literal["fourier", "pixel"] = "fourier",
        n_channels: int = 4,
        top_k: int = 4,
        max_rows: int = 2000,
        layer: str | None = None,
    ) -> None:
        self.steps = steps
        self.learning_rate = learning_rate
        self.jitter = jitter
        self.blur = blur
        self.parameterization = parameterization
        self.n_channels = n_channels
        self.top_k = top_k
        self.max_rows = max_rows
        self.layer = layer
        if steps < 1 or top_k < 1 or max_rows < 1 or n_channels < 0:
            raise ValueError("steps, top_k and max_rows must be at least 1 and n_channels at least 0")
        if jitter < 0 or blur < 0 or learning_rate <= 0:
            raise ValueError("jitter and blur must be >= 0 and learning_rate > 0")
        if parameterization not in ("fourier", "pixel"):
            raise ValueError("parameterization must be 'fourier' or 'pixel'")

    def check(self, model: ModelHandle, data: AuditData) -> str | None:
        reason = super().check(model, data)
        if reason is None and self.n_channels:
            try:
                if concept_layer(model, self.layer) is None:
                    return "the network exposes no layer whose channels could be shown; set n_channels to 0 or name a layer"
            except AuditError as exc:
                return f"{exc.problem} {exc.fix}"
        return reason

    def _run(self, model: ModelHandle, data: AuditData, context: RunContext) -> FeatureVisualizationResult:
        rng = context.rng("feature_visualization")
        lo, hi = (float(v) for v in getattr(model.card.input, "value_range", (0.0, 1.0)))
        rows = np.arange(len(data)) if len(data) <= self.max_rows else np.sort(rng.choice(len(data), self.max_rows, replace=False))
        found = concept_layer(model, self.layer) if self.n_channels else None
        layer_name = found[0] if found else ""
        context.report(0.05, "scanning the evaluation images")
        with torch.inference_mode(), captured_output(found[1]) if found else nullcontext() as store:

            def scan(batch: torch.Tensor) -> torch.Tensor:
                if store is not None:
                    store.clear()
                logits = model.model(batch)
                if store is None:
                    return logits
                return torch.cat([logits, _channel_means(store[-1])], dim=1)

            scanned = model.map_batches(scan, data.x[rows]).float().cpu().numpy()
        k = model.n_classes
        logits, channel_acts = scanned[:, :k], scanned[:, k:]
        top_class = np.argsort(-logits, axis=0, kind="stable")[: self.top_k].T  # (classes, top_k) positions in rows
        channels = np.argsort(-channel_acts.mean(axis=0), kind="stable")[: self.n_channels] if channel_acts.shape[1] else np.zeros(0, np.int64)
        top_channel = np.argsort(-channel_acts[:, channels], axis=0, kind="stable")[: self.top_k].T if len(channels) else np.zeros((0, self.top_k), np.int64)

        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**31)))
        context.report(0.2, "optimising class and channel images")
        # One batch: the first k images raise their class logit, the rest their channel's mean activation (one pass a step).
        index = torch.as_tensor(channels, dtype=torch.long, device=model.device)
        with captured_output(found[1]) if found else nullcontext() as cap:

            def objective(x: torch.Tensor) -> torch.Tensor:
                if cap is not None:
                    cap.clear()
                logits = model.model(x)
                out = logits[:k].diagonal()
                if len(channels):
                    means = _channel_means(cap[-1])[k:]
                    out = torch.cat([out, means.gather(1, index.view(-1, 1)).squeeze(1)])
                return out

            images = self._optimise(model, objective, k + len(channels), lo, hi, gen)
            with torch.inference_mode():
                if cap is not None:
                    cap.clear()
                reached = model.model(model.to_tensor(images)).float().cpu().numpy()[:k]
                reached_act = _channel_means(cap[-1]).float().cpu().numpy()[k + np.arange(len(channels)), channels] if len(channels) else np.zeros(0)
        class_images, channel_images = images[:k], images[k:]
        proba = np.exp(reached - reached.max(axis=1, keepdims=True))
        proba /= proba.sum(axis=1, keepdims=True)
        return FeatureVisualizationResult(
            method=self.name,
            params=self.params,
            seed=context.seed,
            layer=layer_name,
            class_names=list(data.class_names),
            class_images=class_images.astype(np.float32),
            class_logits=np.diagonal(reached).astype(np.float64),
            class_probability=np.diagonal(proba).astype(np.float64),
            eval_max_logits=logits.max(axis=0).astype(np.float64),
            channels=channels.astype(np.int64),
            channel_images=channel_images.astype(np.float32),
            channel_activation=np.asarray(reached_act, dtype=np.float64),
            top_class_rows=rows[top_class].astype(np.int64),
            top_class_logits=np.take_along_axis(logits.T, top_class, axis=1).astype(np.float64),
            top_class_images=data.x[rows[top_class]].astype(np.float16),
            top_channel_rows=rows[top_channel].astype(np.int64),
            top_channel_images=data.x[rows[top_channel]].astype(np.float16),
            top_channel_values=(np.take_along_axis(channel_acts[:, channels].T, top_channel, axis=1) if len(channels) else np.zeros((0, self.top_k))).astype(
                np.float64
            ),
            steps=self.steps,
            value_range=[lo, hi],
        )

    def _optimise(
        self, model: ModelHandle, objective: Callable[[torch.Tensor], torch.Tensor], n: int, lo: float, hi: float, gen: torch.Generator
    ) -> np.ndarray:
        """``n`` images in [lo, hi] raising ``objective`` (one value per image) by Adam, with jitter and blur each step."""
        shape = (n, *model.input_shape)
        height, width = shape[2], shape[3]
        device = model.device
        with torch.inference_mode(False), torch.enable_grad():
            if self.parameterization == "fourier":
                fy = torch.fft.fftfreq(height, device=device)[:, None]
                fx = torch.fft.rfftfreq(width, device=device)[None, :]
                scale = 1.0 / torch.clamp(torch.sqrt(fx**2 + fy**2), min=1.0 / max(height, width))
                scale = scale / scale.max()
                spectrum = (0.01 * torch.randn((*shape[:2], height, width // 2 + 1, 2), generator=gen)).to(device).requires_grad_(True)
                params = [spectrum]

                def image() -> torch.Tensor:
                    z = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(height, width), norm="ortho")
                    return lo + (hi - lo) * torch.sigmoid(z * (height * width) ** 0.5)
            else:
                raw = (0.01 * torch.randn(shape, generator=gen)).to(device).requires_grad_(True)
                params = [raw]

                def image() -> torch.Tensor:
                    return lo + (hi - lo) * torch.sigmoid(raw)

            opt = Adam(params, lr=self.learning_rate)
            kernel = _gaussian_kernel(self.blur, shape[1], device) if self.blur > 0 else None
            for _ in range(self.steps):
                x = image()
                if self.jitter:
                    dy, dx = (int(v) for v in torch.randint(-self.jitter, self.jitter + 1, (2,), generator=gen))
                    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                if kernel is not None:
                    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [kernel.shape[-1] // 2] * 4, mode="replicate"), kernel, groups=shape[1])
                opt.zero_grad()
                (-objective(x).sum()).backward()
                opt.step()
            return image().detach().float().cpu().numpy()


class Adam:
    """Adam (Kingma and Ba, 2015) with torch's defaults (betas 0.9, 0.999; eps 1e-8), the arithmetic of
    ``torch.optim.Adam``'s single-tensor path step for step.

    Written out because constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` on first
    use (1.7-4 s on the development machine, more than the 64 steps it would drive).
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**self.step_count
        bias_correction2_sqrt = (1 - beta2**self.step_count) ** 0.5
        for p, (exp_avg, exp_avg_sq) in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            exp_avg.lerp_(p.grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad.conj(), value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.addcdiv_(exp_avg, denom, value=-self.lr / bias_correction1)


def _channel_means(out: torch.Tensor) -> torch.Tensor:
    """(N, channels): a layer output's mean per channel (conv maps over space, tokens over the sequence)."""
    out = out[0] if isinstance(out, tuple) else out
    if out.ndim == 4:
        return out.mean(dim=(2, 3))
    if out.ndim == 3:
        return out.mean(dim=1)
    return out.reshape(out.shape[0], -1)


def _gaussian_kernel(sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    radius = max(1, int(np.ceil(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()
