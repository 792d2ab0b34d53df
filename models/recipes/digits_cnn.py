"""Recipe for the ``digits-cnn`` zoo model: DigitsCNN on scikit-learn's 8x8 digits.

Each image gets a synthetic acquisition ``site`` (A/B/C) drawn with a seeded RNG; site C images
are degraded like a worse scanner (blur, lower contrast, noise) in train and eval alike, so the
fairness and robustness audits have a real, known gap to find. The network trains on normalized
pixels; ``eval.npz`` holds raw [0, 1] pixels and the card declares the normalization.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file
from scipy.ndimage import gaussian_filter
from sklearn.datasets import load_digits
from torch import nn

from models.architectures import DigitsCNN
from models.card import load_card, parse_card
from models.recipes import deterministic_torch, rate, save_weights, training_sample, write_card, write_npz

NAME = "digits-cnn"
RECIPE = "models/recipes/digits_cnn.py"
ARCH_KWARGS = {"in_channels": 1, "n_classes": 10, "width": 16}
TARGET_LAYER = "features.2"  # the last conv

SITES = ("A", "B", "C")
SITE_PROBS = (0.55, 0.35, 0.10)
# Site C "worse scanner": Gaussian blur, contrast squeezed towards the image mean, additive noise.
BLUR_SIGMA = 0.7
CONTRAST = 0.7
NOISE_STD = 0.1

EVAL_FRACTION = 0.4
EPOCHS = 60
BATCH_SIZE = 32
LR = 3e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 1  # augmentation: random translation by up to this many pixels (zero fill)
ENSEMBLE_MEMBERS = 3  # ensemble.yaml: weights.safetensors and two more seeds


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Site C acquisition: blur (sigma BLUR_SIGMA), contrast CONTRAST around the mean, noise NOISE_STD."""
    out = gaussian_filter(img, sigma=BLUR_SIGMA, mode="constant", cval=0.0)
    out = out.mean() + CONTRAST * (out - out.mean())
    out = out + rng.normal(0.0, NOISE_STD, size=out.shape)
    return np.clip(out, 0.0, 1.0)


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 1797 digits as float32 (N, 1, 8, 8) in [0, 1], int64 labels and the site per image."""
    site_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 1]).spawn(2))
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float64)
    y = digits.target.astype(np.int64)
    site = site_rng.choice(np.array(SITES), size=len(y), p=SITE_PROBS)
    for i in np.flatnonzero(site == "C"):
        x[i] = degrade(x[i], noise_rng)
    return x[:, None].astype(np.float32), y, site


def stratified_split(y: np.ndarray, eval_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-label shuffled split; returns sorted train and eval indices."""
    train, held = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_eval = int(round(eval_fraction * len(idx)))
        held.append(idx[:n_eval])
        train.append(idx[n_eval:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def shift_batch(xb: torch.Tensor, rng: np.random.Generator, max_shift: int, fill: float) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in [-max_shift, max_shift], filling with the background."""
    if max_shift <= 0:
        return xb
    n, _, h, w = xb.shape
    pad = torch.nn.functional.pad(xb, (max_shift,) * 4, value=fill)
    dy, dx = rng.integers(0, 2 * max_shift + 1, size=(2, n))
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def predict(model: nn.Module, x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Class predictions for raw [0, 1] pixels, normalizing as the card declares (one full batch)."""
    model.eval()
    with torch.no_grad():
        xt = (torch.from_numpy(x) - mean) / std
        return model(xt).argmax(dim=1).numpy()


def metrics(pred: np.ndarray, y: np.ndarray, site: np.ndarray) -> dict:
    return {
        "eval_accuracy": rate(pred == y),
        "eval_accuracy_by_site": {s: rate(pred[site == s] == y[site == s]) for s in SITES},
    }


def write_training_sample(out_dir: Path, seed: int = 0) -> dict:
    """Write ``train.npz`` and ``train_attributes.csv``: a seeded subset of the training split (no training needed).

    The card's ``data.train_path`` names them (membership inference compares the model on them with the
    evaluation data). ``sample_id`` is the image's index in ``load_digits()``, as in the evaluation attributes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y, site = make_data(seed)
    tr = split_and_normalisation(x, y, seed)[0]
    rows = tr[training_sample(len(tr), seed)]
    write_npz(out_dir / "train.npz", x=x[rows], y=y[rows])
    pd.DataFrame({"site": site[rows], "sample_id": rows}).to_csv(out_dir / "train_attributes.csv", index=False, lineterminator="\n")
    return {"path": "train.npz", "attributes_path": "train_attributes.csv", "n": int(len(rows))}


def _train(
    x: np.ndarray, y: np.ndarray, site: np.ndarray, tr: np.ndarray, ev: np.ndarray, mean: float, std: float, torch_seed: int, train_rng: np.random.Generator
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train one DigitsCNN on the training split (torch seeded by ``torch_seed``, batches and shifts drawn from ``train_rng``):
    its state dict and its evaluation metrics."""
    with deterministic_torch(torch_seed):
        model = DigitsCNN(**ARCH_KWARGS)
        opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
        xt = (torch.from_numpy(x[tr]) - mean) / std
        yt = torch.from_numpy(y[tr])
        background = (0.0 - mean) / std  # a zero pixel, normalized
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(EPOCHS):
            model.train()
            order = torch.from_numpy(train_rng.permutation(len(tr)))
            for start in range(0, len(tr), BATCH_SIZE):
                b = order[start : start + BATCH_SIZE]
                opt.zero_grad()
                loss = loss_fn(model(shift_batch(xt[b], train_rng, MAX_SHIFT, background)), yt[b])
                loss.backward()
                opt.step()
            sched.step()
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        m = metrics(predict(model, x[ev], mean, std), y[ev], site[ev])
    return state, m


def split_and_normalisation(x: np.ndarray, y: np.ndarray, seed: int):
    """The seeded train/eval split, the training generator, and the normalization constants: training-set
    pixel mean/std, rounded so the card holds exactly the numbers the network was trained with."""
    split_rng, train_rng = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, 2]).spawn(2))
    tr, ev = stratified_split(y, EVAL_FRACTION, split_rng)
    mean = round(float(x[tr].astype(np.float64).mean()), 6)
    std = round(float(x[tr].astype(np.float64).std()), 6)
    return tr, ev, mean, std, train_rng


def build(out_dir: Path, seed: int = 0) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y, site = make_data(seed)
    tr, ev, mean, std, train_rng = split_and_normalisation(x, y, seed)

    state, m = _train(x, y, site, tr, ev, mean, std, seed, train_rng)

    weights = out_dir / "weights.safetensors"
    save_weights(weights, state)
    write_npz(out_dir / "eval.npz", x=x[ev], y=y[ev])
    pd.DataFrame({"site": site[ev], "sample_id": ev}).to_csv(out_dir / "eval_attributes.csv", index=False, lineterminator="\n")
    sample = write_training_sample(out_dir, seed)

    counts = {s: int(np.count_nonzero(site == s)) for s in SITES}
    card = {
        "name": NAME,
        "description": (
            "Small CNN classifying 8x8 handwritten digits (scikit-learn's copy of the UCI optical "
            "digits test set), with a synthetic acquisition-site attribute whose rare site C images "
            "are degraded."
        ),
        "modality": "image",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:DigitsCNN", "kwargs": dict(ARCH_KWARGS)},
        "class_names": [str(i) for i in range(10)],
        "input": {
            "kind": "image",
            "channels": 1,
            "height": 8,
            "width": 8,
            "value_range": [0.0, 1.0],
            "normalization": {"mean": [mean], "std": [std]},
        },
        "output": "logits",
        "target_layer": TARGET_LAYER,
        "data": {
            "path": "eval.npz",
            "label_column": "y",
            "attributes_path": "eval_attributes.csv",
            "sensitive": ["site"],
            "train_path": sample["path"],
            "train_attributes_path": sample["attributes_path"],
        },
        "notes": {
            "recipe": RECIPE,
            "seed": seed,
            "data_origin": (
                "sklearn.datasets.load_digits() (bundled with scikit-learn; 1797 images, pixel "
                "values 0..16 divided by 16). eval_attributes.csv sample_id is the image's index "
                "in load_digits()."
            ),
            "site_attribute": (
                "Synthetic, not real provenance: each image was assigned a site with a seeded RNG "
                f"(A {SITE_PROBS[0]:.0%}, B {SITE_PROBS[1]:.0%}, C {SITE_PROBS[2]:.0%}). Site C "
                "images were degraded to imitate a worse scanner: Gaussian blur "
                f"(sigma {BLUR_SIGMA}), contrast scaled by {CONTRAST} around the image mean, "
                f"additive Gaussian noise (std {NOISE_STD}), clipped to [0, 1]. The degradation "
                "is applied in train and eval alike; sites A and B are unmodified."
            ),
            "site_counts_all": counts,
            "split": f"stratified by label, seeded; {1 - EVAL_FRACTION:.0%} train / {EVAL_FRACTION:.0%} eval",
            "n_train": int(len(tr)),
            "n_eval": int(len(ev)),
            "n_eval_by_site": {s: int(np.count_nonzero(site[ev] == s)) for s in SITES},
            "train_sample": f"train.npz / train_attributes.csv: a seeded subset of {sample['n']} of the {len(tr)} training images",
            "training": (
                f"Adam lr {LR} weight_decay {WEIGHT_DECAY}, cosine schedule, {EPOCHS} epochs, "
                f"batch {BATCH_SIZE}, cross-entropy, on normalized pixels; augmentation: random "
                f"translation by up to {MAX_SHIFT} pixel(s), background fill"
            ),
            "eval_accuracy": m["eval_accuracy"],
            "eval_accuracy_by_site": m["eval_accuracy_by_site"],
        },
    }
    parse_card(card, base_dir=out_dir, source=f"{NAME} card")  # validate before writing
    write_card(out_dir / "card.yaml", card)

    verify_written(out_dir, DigitsCNN, m, NAME)
    members = write_ensemble(out_dir, seed)

    return {
        "n_train": int(len(tr)),
        "n_eval": int(len(ev)),
        "n_eval_by_site": card["notes"]["n_eval_by_site"],
        **m,
        "ensemble_eval_accuracy": members,
    }


def write_ensemble(out_dir: Path, seed: int = 0) -> list[float]:
    """Train ``ENSEMBLE_MEMBERS - 1`` more DigitsCNNs by the same recipe with other seeds and write ``ensemble.yaml``:
    the folder's ``card.yaml`` with their weights under ``ensemble`` (a deep ensemble for the uncertainty and OOD probes).

    ``card.yaml`` and ``weights.safetensors`` are read, not written; the ensemble card is not a zoo name (the zoo
    lists folders) but a card path: ``audits run models/zoo/digits-cnn/ensemble.yaml``. Returns each member's
    evaluation accuracy (the first as its card records it).
    """
    out_dir = Path(out_dir)
    card = yaml.safe_load((out_dir / "card.yaml").read_text())
    x, y, site = make_data(seed)
    tr, ev = split_and_normalisation(x, y, seed)[:2]
    mean, std = card["input"]["normalization"]["mean"][0], card["input"]["normalization"]["std"][0]
    files, accuracy = [], []
    for member in range(1, ENSEMBLE_MEMBERS):
        # Same data, split and normalization; another initialisation (torch seed) and batch/shift order.
        state, m = _train(x, y, site, tr, ev, mean, std, seed + member, np.random.default_rng(np.random.SeedSequence([seed, 2, member])))
        name = f"ensemble-{member}.safetensors"
        save_weights(out_dir / name, state)
        files.append(name)
        accuracy.append(m["eval_accuracy"])
    ensemble = {
        **card,
        "name": f"{NAME}-ensemble",
        "description": (
            f"digits-cnn as a deep ensemble of {ENSEMBLE_MEMBERS} members: its own weights and {ENSEMBLE_MEMBERS - 1} more trained by "
            "the same recipe with other seeds. The audit runs the first member (weights.safetensors); the uncertainty "
            "and OOD probes read all of them."
        ),
        "ensemble": files,
        "notes": {
            **card["notes"],
            "ensemble": (
                f"members 2..{ENSEMBLE_MEMBERS}: the recipe's training with torch seed seed+i and batch/shift draws from "
                "SeedSequence([seed, 2, i]) (member 1 is weights.safetensors, seed 0); same data, split and normalization"
            ),
            "ensemble_eval_accuracy": [card["notes"]["eval_accuracy"], *accuracy],
        },
    }
    parse_card(ensemble, base_dir=out_dir, source=f"{NAME}-ensemble card")
    write_card(out_dir / "ensemble.yaml", ensemble)
    return [card["notes"]["eval_accuracy"], *accuracy]


def verify_written(out_dir: Path, net_cls: type, expected: dict, name: str) -> None:
    """Self-check: the written card, weights and eval data reproduce the recorded metrics."""
    written = load_card(out_dir / "card.yaml")
    check = net_cls(**written.architecture.kwargs)
    check.load_state_dict(load_file(str(written.weights_path)), strict=True)
    with np.load(written.resolve(written.data.path)) as npz:
        ex, ey = npz["x"], npz["y"]
    esite = pd.read_csv(written.resolve(written.data.attributes_path))["site"].to_numpy()
    norm = written.input.normalization
    again = metrics(predict(check, ex, norm.mean[0], norm.std[0]), ey, esite)
    if again != expected:
        raise RuntimeError(f"{name}: metrics from the written files {again} differ from training-time {expected}")
