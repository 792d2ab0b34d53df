"""Natural image corruptions at severities 0-5, vectorized over the batch in torch.

Images are mapped from the card's value range to [0, 1], corrupted, clipped and mapped
back. Severity 0 is the identity; each corruption's strength grows monotonically with the
severity (``SEVERITY_PARAMETERS``, values after Hendrycks and Dietterich's ImageNet-C /
CIFAR-10-C). Random corruptions take a ``torch.Generator``: re-seeding it with the same seed
for every severity gives the same noise draws at every strength (common random numbers),
so accuracy curves over severity are not blurred by fresh noise at each point.
JPEG goes through Pillow image by image (no model call inside that loop).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

if TYPE_CHECKING:
    from models.loader import ModelHandle

# Strength per severity 0..5, per corruption; the unit is in the comment.
SEVERITY_PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.0, 0.08, 0.12, 0.18, 0.26, 0.38),  # noise std, fraction of the value range
    "shot_noise": (math.inf, 60.0, 25.0, 12.0, 5.0, 3.0),  # photons at full brightness (fewer = noisier)
    "gaussian_blur": (0.0, 0.5, 0.75, 1.0, 1.25, 1.5),  # blur sigma in pixels (times max(1, side / 64))
    "contrast": (1.0, 0.75, 0.5, 0.4, 0.3, 0.15),  # contrast factor around the image mean
    "brightness": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),  # added brightness, fraction of the value range
    "pixelate": (1.0, 0.8, 0.6, 0.45, 0.35, 0.25),  # resolution kept, fraction of each side
    "jpeg": (100.0, 80.0, 65.0, 50.0, 30.0, 10.0),  # JPEG quality (severity 0 skips the codec)
    "occlusion": (0.0, 0.25, 0.375, 0.5, 0.625, 0.75),  # side of a mid-grey square patch, fraction of the image side
}
CORRUPTIONS: tuple[str, ...] = tuple(SEVERITY_PARAMETERS)
# Whether a larger parameter means a stronger corruption (for the monotonicity contract).
INCREASING = {
    "gaussian_noise": True,
    "shot_noise": False,
    "gaussian_blur": True,
    "contrast": False,
    "brightness": True,
    "pixelate": False,
    "jpeg": False,
    "occlusion": True,
}
MAX_SEVERITY = 5


def parameter(name: str, severity: int) -> float:
    return SEVERITY_PARAMETERS[name][severity]


def _gaussian_noise(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    return u + p * torch.randn(u.shape, generator=g, device=u.device, dtype=u.dtype)


def _shot_noise(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.poisson(u.clamp_min(0) * p, generator=g) / p


def _gaussian_blur(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    sigma = p * max(1.0, min(u.shape[-2:]) / 64)
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=u.device, dtype=u.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = u.shape[1]
    out = F.pad(u, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _contrast(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    mean = u.mean(dim=(1, 2, 3), keepdim=True)
    return (u - mean) * p + mean


def _brightness(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    return u + p


def _cell_overlap(n: int, s: int, device: torch.device) -> torch.Tensor:
    """(s, n): the share of each of ``n`` pixels that falls into each of ``s`` equal low-resolution cells."""
    fine = torch.arange(n + 1, dtype=torch.float64, device=device) / n
    coarse = torch.arange(s + 1, dtype=torch.float64, device=device) / s
    lo = torch.maximum(coarse[:-1, None], fine[None, :-1])
    hi = torch.minimum(coarse[1:, None], fine[None, 1:])
    return ((hi - lo).clamp_min(0) * n).float()


def _pixelate(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    # Exact box resampling both ways (area average into cells, area-weighted back): unlike
    # 'area' down + 'nearest' up, a non-integer ratio (8 px -> 5 cells) does not give
    # irregular blocks, so the change grows monotonically with severity even on tiny images.
    h, w = u.shape[-2:]
    oh = _cell_overlap(h, max(1, round(h * p)), u.device)
    ow = _cell_overlap(w, max(1, round(w * p)), u.device)
    small = torch.einsum("ah,nchw,bw->ncab", oh / oh.sum(1, keepdim=True), u, ow / ow.sum(1, keepdim=True))
    return torch.einsum("ah,ncab,bw->nchw", oh, small, ow)


def _jpeg(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    pixels = (u.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # (n, C, H, W)
    n, c = pixels.shape[:2]
    # Pillow codes grey (L) and RGB images; other channel counts go channel by channel as grey.
    planes = pixels.transpose(0, 2, 3, 1) if c == 3 else pixels.reshape(n * c, *pixels.shape[2:])
    decoded = np.empty_like(planes)
    for i, plane in enumerate(planes):
        buffer = io.BytesIO()
        Image.fromarray(plane).save(buffer, format="JPEG", quality=int(p))
        decoded[i] = np.asarray(Image.open(buffer))
    out = decoded.transpose(0, 3, 1, 2) if c == 3 else decoded.reshape(pixels.shape)
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=u.device, dtype=u.dtype) / 255.0


def _occlusion(u: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = u.shape
    ph, pw = max(1, round(h * p)), max(1, round(w * p))
    # One uniform draw per image and axis, scaled to the free range: the patch keeps its
    # relative place at every severity (common random numbers) while it grows.
    r = torch.rand((2, n), generator=g, device=u.device)
    top = (r[0] * (h - ph + 1)).floor().long().view(n, 1, 1, 1)
    left = (r[1] * (w - pw + 1)).floor().long().view(n, 1, 1, 1)
    rows = torch.arange(h, device=u.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=u.device).view(1, 1, 1, w)
    mask = (rows >= top) & (rows < top + ph) & (cols >= left) & (cols < left + pw)
    return torch.where(mask, torch.full_like(u, 0.5), u)


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "pixelate": _pixelate,
    "jpeg": _jpeg,
    "occlusion": _occlusion,
}


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """``x`` (n, C, H, W, pixel space) under corruption ``name`` at ``severity`` (0 = unchanged)."""
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(CORRUPTIONS)}")
    if not 0 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be in 0..{MAX_SEVERITY}, got {severity}")
    if severity == 0:
        return x
    low, high = value_range
    u = (x - low) / (high - low)
    out = _FUNCTIONS[name](u, parameter(name, severity), generator).clamp(0.0, 1.0)
    return out * (high - low) + low


def check_corruptions(names: list[str] | None) -> list[str]:
    names = list(CORRUPTIONS) if names is None else list(names)
    unknown = [n for n in names if n not in SEVERITY_PARAMETERS]
    if unknown or not names:
        raise ValueError(f"corruptions must be a non-empty list from {', '.join(CORRUPTIONS)}; got {names}")
    return names


def check_severities(severities: list[int]) -> list[int]:
    out = sorted({int(s) for s in severities})
    if not out or out[0] < 1 or out[-1] > MAX_SEVERITY:
        raise ValueError(f"severities must be a non-empty list of integers in 1..{MAX_SEVERITY}, got {severities}")
    return out


def corrupted_proba(
    model: ModelHandle, x: np.ndarray, name: str, severities: list[int], seed: int, value_range: tuple[float, float], *, logits: bool = False
) -> np.ndarray:
    """Class probabilities (or with ``logits`` the model's outputs) of ``x`` under corruption ``name`` at each severity: (S, n, K).

    Corruption runs on the model's device in fixed-size chunks; each chunk's generator is
    re-seeded identically for every severity (common random numbers). All severities of a
    chunk go through the model together in ``map_batches``.
    """
    size = chunk_rows(tuple(x.shape[1:]))
    seeds = np.random.default_rng(seed).integers(2**62, size=max(1, -(-len(x) // size)))
    generator = torch.Generator(device=model.device)
    parts = []
    for c, start in enumerate(range(0, len(x), size)):
        chunk = model.to_tensor(x[start : start + size])
        variants = []
        for s in severities:
            generator.manual_seed(int(seeds[c]))
            variants.append(corrupt(chunk, name, s, generator, value_range))
        with torch.inference_mode():
            proba = model.map_batches(model.model if logits else (lambda t: torch.softmax(model.model(t), dim=1)), torch.cat(variants))
        parts.append(proba.float().cpu().numpy().reshape(len(severities), len(chunk), -1))
    return np.concatenate(parts, axis=1)


def chunk_rows(shape: tuple[int, ...], budget_bytes: int = 64 << 20) -> int:
    """Rows per corruption chunk: a fixed size (not the OOM-adaptive batch), so random draws are reproducible."""
    return int(max(1, budget_bytes // (4 * int(np.prod(shape)))))
