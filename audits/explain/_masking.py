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
# Distinct-row evaluation: (sample, background row, coalition) keys held at once, and their bits.
_KEY_ELEMENTS = 2_000_000
_KEY_BITS = 62
_KEEP_TABLE_BYTES = 4 << 20
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

    def __init__(
        self, x: torch.Tensor, background: torch.Tensor, groups: list[np.ndarray], pair_background: torch.Tensor | None = None, *, distinct: bool = False
    ) -> None:
        column_feature = np.empty(x.shape[1], dtype=np.int64)
        for j, columns in enumerate(groups):
            column_feature[columns] = j
        self.x = x
        self.background = background
        self.n_features = len(groups)
        self.column_feature = torch.as_tensor(column_feature, device=x.device)
        self.pair_background = pair_background
        # With ``distinct`` (background averaging only), ``coalition_values`` evaluates each distinct
        # row once: where a sample and a background row agree on a feature, keeping or replacing
        # it gives the same row, so coalitions differing only there share one model row.
        self.distinct = distinct and pair_background is None
        self._keep_table: torch.Tensor | None = None  # keep flags per column for every key, when small
        self.rows_per_pair = len(background) if pair_background is None else 1
        # Each output row, plus per pair the keep-mask and the gathered sample (and donor) rows.
        self.row_bytes = 4 * x.shape[1] + 9 * x.shape[1] // self.rows_per_pair

    def differing(self) -> np.ndarray:
        """(n, B) int64 bit codes: bit j set where sample i and background row b differ on feature j."""
        onehot = torch.zeros(self.x.shape[1], self.n_features, device=self.x.device)
        onehot[torch.arange(self.x.shape[1], device=self.x.device), self.column_feature] = 1.0
        bits = torch.as_tensor(1 << np.arange(self.n_features, dtype=np.int64), device=self.x.device)
        step = max(1, _KEY_ELEMENTS // max(self.background.numel(), 1))  # (samples, B, D) comparisons at once
        codes = []
        for x in self.x.split(step):
            differs = ((x[:, None, :] != self.background[None]).float() @ onehot) > 0  # (n, B, M)
            codes.append((differs.long() * bits).sum(dim=-1))
        return torch.cat(codes).cpu().numpy()

    def keyed_rows(self, samples: torch.Tensor, background: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Rows taking sample columns for the features set in ``keys`` (bit codes), background columns elsewhere."""
        if self._keep_table is None and (1 << self.n_features) * self.x.shape[1] <= _KEEP_TABLE_BYTES:
            codes = torch.arange(1 << self.n_features, device=keys.device)
            self._keep_table = self._keep_columns(codes)
        keep = self._keep_table.index_select(0, keys) if self._keep_table is not None else self._keep_columns(keys)
        return torch.where(keep, self.x.index_select(0, samples), self.background.index_select(0, background))

    def _keep_columns(self, keys: torch.Tensor) -> torch.Tensor:
        players = torch.arange(self.n_features, device=keys.device)
        return ((keys[:, None] >> players) & 1).bool().index_select(1, self.column_feature)

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
    if getattr(masker, "distinct", False) and _fits_codes(masks.shape[-1], len(masker.background)):
        return _distinct_row_values(model, fn, masker, masks, targets, progress)
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


def _fits_codes(n_players: int, n_background: int) -> bool:
    """Whether (sample, background row, coalition) keys fit one int64 for at least one sample at a time."""
    return n_players + max(n_background, 1).bit_length() <= _KEY_BITS


def _distinct_row_values(
    model: ModelHandle,
    fn: Callable[[torch.Tensor], torch.Tensor],
    masker: TabularMasker,
    masks: np.ndarray,
    targets: np.ndarray,
    progress: Callable[[float], None] | None,
) -> np.ndarray:
    """``coalition_values`` for a background-averaging tabular masker, evaluating distinct rows only.

    The row of (sample i, coalition S, background row b) depends on S only through
    S & D_ib, the features on which i and b differ. Per chunk of samples, every triple gets
    the key (i, b, S & D_ib); each distinct key is evaluated once and the coalition values
    are means of the keys' outputs over b. Exact: identical inputs give identical outputs.
    """
    n, m = len(targets), masks.shape[-1]
    n_background = len(masker.background)
    codes = masks.astype(np.int64) @ (np.int64(1) << np.arange(m, dtype=np.int64))  # (S,) or (n, S)
    n_coalitions = codes.shape[-1]
    differ = masker.differing()  # (n, B)
    per_pair = n_background * n_coalitions
    step = max(1, min(_KEY_ELEMENTS // max(per_pair, 1), (1 << (_KEY_BITS - m)) // n_background))
    # Rows are built one model batch at a time: batch-sized temporaries stay in cache.
    row_step = model.batch_size
    device = model.device
    target_t = torch.as_tensor(targets, dtype=torch.long, device=device)
    values = np.empty((n, n_coalitions))
    with torch.inference_mode():
        for s0 in range(0, n, step):
            s1 = min(s0 + step, n)
            chunk_codes = codes[None, None, :] if codes.ndim == 1 else codes[s0:s1, None, :]
            pair = np.arange((s1 - s0) * n_background, dtype=np.int64).reshape(s1 - s0, n_background, 1)
            flat = ((pair << m) | (chunk_codes & differ[s0:s1, :, None])).ravel()
            unique, inverse = _distinct(flat, (s1 - s0) * n_background << m)
            pair_of = torch.as_tensor(unique >> m, device=device)
            key_of = torch.as_tensor(unique & ((1 << m) - 1), device=device)
            sample_of, background_of = s0 + pair_of // n_background, pair_of % n_background
            outputs = []
            for r0 in range(0, len(unique), row_step):
                part = slice(r0, r0 + row_step)
                rows = masker.keyed_rows(sample_of[part], background_of[part], key_of[part])
                out = model.map_batches(fn, rows)
                outputs.append(out.gather(1, target_t[sample_of[part]][:, None])[:, 0])
            row_values = torch.cat(outputs).double().cpu().numpy()
            values[s0:s1] = row_values[inverse].reshape(s1 - s0, n_background, n_coalitions).mean(axis=1)
            if progress is not None:
                progress(s1 / n)
    return values


def _distinct(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and each key's position among them: a presence table when the key
    space is small (no sort), else ``np.unique``."""
    if n_keys <= 2 * len(keys):
        seen = np.zeros(n_keys, dtype=bool)
        seen[keys] = True
        position = np.cumsum(seen) - 1
        return np.flatnonzero(seen), position[keys]
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, inverse.ravel()


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


def check_superpixel_params(n_segments: int, baseline: str) -> None:
    """The parameter checks every superpixel probe shares (raise ValueError, turned into SpecError)."""
    if n_segments < 2:
        raise ValueError(f"n_segments must be at least 2, got {n_segments}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")


def superpixel_values(
    model: ModelHandle,
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    baseline: np.ndarray,
    segments: np.ndarray,
    masks: np.ndarray,
    targets: np.ndarray,
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Target outputs of ``images`` with the superpixels off in ``masks`` showing ``baseline``:
    (n, len(masks)), every image and mask in large batches on the model's device."""
    masker = ImageMasker(model.to_tensor(images), model.to_tensor(baseline), torch.as_tensor(segments, device=model.device))
    return coalition_values(model, fn, masker, masks, targets, progress=progress)
