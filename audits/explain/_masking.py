"""Applying coalition masks to inputs and evaluating them in large batches.

A masker turns (sample, coalition) pairs into model inputs: tabular rows that take the
sample's columns for features in the coalition and a background row's elsewhere, or
images whose superpixels outside the coalition show a baseline. ``coalition_values``
builds those inputs chunk by chunk on the model's device (so memory stays bounded) and
sends each chunk through ``model.map_batches``: many samples and coalitions per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.segmentation import slic

if TYPE_CHECKING:
    from models.loader import ModelHandle

Baseline = Literal["mean", "zeros", "blur"]
BASELINES: tuple[str, ...] = ("mean", "zeros", "blur")
# Bytes of perturbed input (with its temporaries) built at once; a few model batches' worth.
CHUNK_BYTES = 128 << 20
_MIN_SEGMENTS = 4


class Masker(Protocol):
    rows_per_pair: int  # model rows averaged into one coalition value
    row_bytes: int  # bytes to build one row, temporaries included

    def __call__(self, samples: torch.Tensor, masks: torch.Tensor, coalitions: torch.Tensor) -> torch.Tensor:
        """Model inputs for pairs (samples[i], coalitions[i]) whose keep-masks are masks[i]."""


class TabularMasker:
    """Rows for tabular coalitions: a raw feature (its group of encoded columns) comes from the
    sample when it is in the coalition and from a background row otherwise.

    Without ``pair_background`` every coalition is averaged over all background rows (the
    interventional expectation of KernelSHAP); with it, (n, S) indices pick one background
    row per coalition (LIME's keep-or-replace).
    """

    def __init__(self, x: torch.Tensor, background: torch.Tensor, groups: list[np.ndarray], pair_background: torch.Tensor | None = None) -> None:
        column_feature = np.empty(x.shape[1], dtype=np.int64)
        for j, columns in enumerate(groups):
            column_feature[columns] = j
        self.x = x
        self.background = background
        self.column_feature = torch.as_tensor(column_feature, device=x.device)
        self.pair_background = pair_background
        self.rows_per_pair = len(background) if pair_background is None else 1
        # Each output row, plus per pair the keep-mask and the gathered sample (and donor) rows.
        self.row_bytes = 4 * x.shape[1] + 9 * x.shape[1] // self.rows_per_pair

    def __call__(self, samples: torch.Tensor, masks: torch.Tensor, coalitions: torch.Tensor) -> torch.Tensor:
        keep = masks[:, self.column_feature]  # (P, D)
        if self.pair_background is None:
            rows = torch.where(keep[:, None, :], self.x[samples][:, None, :], self.background[None])
            return rows.reshape(-1, self.x.shape[1])
        return torch.where(keep, self.x[samples], self.background[self.pair_background[samples, coalitions]])


class ImageMasker:
    """Images for superpixel coalitions: superpixels outside the coalition show the baseline."""

    def __init__(self, x: torch.Tensor, baseline: torch.Tensor, segments: torch.Tensor) -> None:
        self.x = x
        self.baseline = baseline
        self.segments = segments.reshape(len(segments), -1).long()
        self.rows_per_pair = 1
        # The gathered image and baseline and the result, plus a pixel index and keep flag per pixel.
        self.row_bytes = 3 * 4 * int(np.prod(x.shape[1:])) + 9 * int(np.prod(x.shape[2:]))

    def __call__(self, samples: torch.Tensor, masks: torch.Tensor, coalitions: torch.Tensor) -> torch.Tensor:
        n, (h, w) = len(samples), self.x.shape[2:]
        keep = masks[torch.arange(n, device=masks.device)[:, None], self.segments[samples]]  # (P, H*W)
        return torch.where(keep.view(n, 1, h, w), self.x[samples], self.baseline[samples])


def pairs_per_chunk(masker: Masker, batch_size: int) -> int:
    """(sample, coalition) pairs built at once: ``CHUNK_BYTES`` of input, rounded down to whole
    model batches when that is at least one batch."""
    rows = CHUNK_BYTES // max(masker.row_bytes, 1)
    if rows >= batch_size:
        rows = rows // batch_size * batch_size
    return max(1, rows // masker.rows_per_pair)


def coalition_values(
    model: ModelHandle,
    fn: Callable[[torch.Tensor], torch.Tensor],
    masker: Masker,
    masks: np.ndarray,
    targets: np.ndarray,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """The target output of every (sample, coalition) pair, averaged over the masker's rows.

    ``masks`` is (S, M) shared by all samples or (n, S, M); returns (n, S) float64.
    """
    n = len(targets)
    device = model.device
    mask_t = torch.as_tensor(masks, device=device)
    if mask_t.ndim == 2:
        mask_t = mask_t.expand(n, *mask_t.shape)  # a view: shared designs are not copied per sample
    n_coalitions = mask_t.shape[1]
    target_t = torch.as_tensor(targets, dtype=torch.long, device=device)
    total = n * n_coalitions
    step = pairs_per_chunk(masker, model.batch_size)
    values = []
    with torch.inference_mode():
        for start in range(0, total, step):
            pairs = torch.arange(start, min(start + step, total), device=device)
            samples, coalitions = pairs // n_coalitions, pairs % n_coalitions
            rows = masker(samples, mask_t[samples, coalitions], coalitions)
            out = model.map_batches(fn, rows).view(len(pairs), masker.rows_per_pair, -1).mean(dim=1)
            del rows  # free this chunk before the next one is built
            values.append(out.gather(1, target_t[samples][:, None])[:, 0].double())
            if progress is not None:
                progress(min(start + step, total) / total)
    if not values:
        return np.zeros((n, 0))
    return torch.cat(values).cpu().numpy().reshape(n, n_coalitions)


def superpixels(images: np.ndarray, n_segments: int) -> np.ndarray:
    """SLIC superpixels (n, H, W) labelled 0..M_i-1 for (n, C, H, W) images.

    Each image is scaled to [0, 1] first so one compactness suits every value range; RGB is
    segmented in Lab as skimage does by default. When SLIC returns fewer than 4 segments
    (flat or noisy images, tiny images) a regular grid of about ``n_segments`` cells is used.
    """
    out = np.empty((len(images), *images.shape[2:]), dtype=np.int64)
    for i, image in enumerate(images):
        lo, hi = float(image.min()), float(image.max())
        scaled = (np.moveaxis(image, 0, -1).astype(np.float64) - lo) / (hi - lo if hi > lo else 1.0)
        if scaled.shape[-1] == 1:
            labels = slic(scaled[..., 0], n_segments=n_segments, compactness=0.2, channel_axis=None, start_label=0)
        elif scaled.shape[-1] == 3:
            labels = slic(scaled, n_segments=n_segments, compactness=20.0, channel_axis=-1, start_label=0)
        else:
            labels = slic(scaled, n_segments=n_segments, compactness=0.2, channel_axis=-1, convert2lab=False, start_label=0)
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        out[i] = labels if labels.max() + 1 >= _MIN_SEGMENTS else grid_segments(*labels.shape, n_segments)
    return out


def grid_segments(height: int, width: int, n_segments: int) -> np.ndarray:
    """A regular grid of about ``n_segments`` rectangular cells, labelled row by row."""
    rows = int(min(height, max(1, round(np.sqrt(n_segments * height / width)))))
    cols = int(min(width, max(1, round(n_segments / rows))))
    r = np.arange(height)[:, None] * rows // height
    c = np.arange(width)[None, :] * cols // width
    return (r * cols + c).astype(np.int64)


def image_baseline(images: np.ndarray, kind: Baseline) -> np.ndarray:
    """What hidden superpixels show: each image's per-channel mean, zeros, or a blurred copy."""
    if kind == "mean":
        return np.broadcast_to(images.mean(axis=(2, 3), keepdims=True, dtype=np.float64), images.shape).astype(np.float32)
    if kind == "zeros":
        return np.zeros_like(images, dtype=np.float32)
    if kind == "blur":
        sigma = max(1.0, max(images.shape[2:]) / 8)
        return gaussian_filter(images.astype(np.float32), sigma=(0, 0, sigma, sigma), mode="nearest")
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def segment_groups(segments: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(number of superpixels, sample positions) for each distinct superpixel count, ascending:
    samples with the same count share one batched evaluation and solve."""
    counts = segments.reshape(len(segments), -1).max(axis=1) + 1
    return [(int(m), np.flatnonzero(counts == m)) for m in np.unique(counts)]


def spread_over_pixels(values: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """(n, M) superpixel values -> (n, H, W): each value shared equally by its pixels, so the
    pixels of a superpixel sum to its value."""
    flat = segments.reshape(len(segments), -1)
    sizes = np.stack([np.bincount(row, minlength=values.shape[1]) for row in flat])
    per_pixel = values / np.maximum(sizes, 1)
    return np.take_along_axis(per_pixel, flat, axis=1).reshape(segments.shape)
