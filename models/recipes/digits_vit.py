"""Recipe for the ``digits-vit`` zoo model: DigitsViT on the same 8x8 digits as ``digits-cnn``.

Same images, synthetic acquisition sites, degradation and train/eval split as the CNN (the
data helpers are imported from its recipe), so the two models' audits compare like for like;
``eval.npz`` and ``eval_attributes.csv`` come out byte-identical to the CNN's. Only the
network and its training schedule differ: a ViT has no convolutional prior, so it trains
longer, with AdamW, a warm-up, dropout and the same one-pixel translation augmentation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from models.architectures import DigitsViT
from models.card import parse_card
from models.recipes import deterministic_torch, save_weights, write_card, write_npz
from models.recipes.digits_cnn import (
    BLUR_SIGMA,
    CONTRAST,
    EVAL_FRACTION,
    MAX_SHIFT,
    NOISE_STD,
    SITE_PROBS,
    SITES,
    make_data,
    metrics,
    predict,
    shift_batch,
    split_and_normalisation,
    verify_written,
    write_training_sample,
)

NAME = "digits-vit"
RECIPE = "models/recipes/digits_vit.py"
ARCH_KWARGS = {"in_channels": 1, "n_classes": 10, "image_size": 8, "patch_size": 2, "dim": 32, "depth": 4, "heads": 4, "mlp_ratio": 2.0, "dropout": 0.1}

EPOCHS = 200
WARMUP_EPOCHS = 10
BATCH_SIZE = 32
LR = 2e-3
WEIGHT_DECAY = 0.05


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(x: np.ndarray, y: np.ndarray, mean: float, std: float, rng: np.random.Generator) -> DigitsViT:
    """Train DigitsViT on raw [0, 1] pixels ``x`` (normalized here as the card declares)."""
    model = DigitsViT(**ARCH_KWARGS)
    # No weight decay on norms, biases, the CLS token and position embeddings (the usual ViT recipe).
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in ("cls_token", "pos_embed")]
    rest = [p for n, p in model.named_parameters() if not (p.ndim > 1 and n not in ("cls_token", "pos_embed"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}], lr=LR)
    steps_per_epoch = math.ceil(len(x) / BATCH_SIZE)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, WARMUP_EPOCHS * steps_per_epoch, EPOCHS * steps_per_epoch))
    xt = (torch.from_numpy(x) - mean) / std
    yt = torch.from_numpy(y)
    background = (0.0 - mean) / std  # a zero pixel, normalized
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), BATCH_SIZE):
            b = order[start : start + BATCH_SIZE]
            opt.zero_grad()
            loss = loss_fn(model(shift_batch(xt[b], rng, MAX_SHIFT, background)), yt[b])
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def build(out_dir: Path, seed: int = 0) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y, site = make_data(seed)
    tr, ev, mean, std, train_rng = split_and_normalisation(x, y, seed)  # the CNN's split and constants

    with deterministic_torch(seed):
        model = train(x[tr], y[tr], mean, std, train_rng)
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        train_acc = float(np.mean(predict(model, x[tr], mean, std) == y[tr]))
        m = metrics(predict(model, x[ev], mean, std), y[ev], site[ev])

    save_weights(out_dir / "weights.safetensors", state)
    write_npz(out_dir / "eval.npz", x=x[ev], y=y[ev])
    pd.DataFrame({"site": site[ev], "sample_id": ev}).to_csv(out_dir / "eval_attributes.csv", index=False, lineterminator="\n")
    sample = write_training_sample(out_dir, seed)

    grid = ARCH_KWARGS["image_size"] // ARCH_KWARGS["patch_size"]
    card = {
        "name": NAME,
        "description": (
            "Small Vision Transformer classifying 8x8 handwritten digits (2x2-pixel patches on a 4x4 grid, "
            "a CLS token, 4 pre-norm blocks of 4 heads); same data, sites and split as digits-cnn."
        ),
        "modality": "image",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:DigitsViT", "kwargs": dict(ARCH_KWARGS)},
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
                "sklearn.datasets.load_digits() (bundled with scikit-learn; 1797 images, pixel values 0..16 "
                "divided by 16); the same images, sites and split as digits-cnn (eval files byte-identical). "
                "eval_attributes.csv sample_id is the image's index in load_digits()."
            ),
            "site_attribute": (
                f"Synthetic, not real provenance: sites drawn with a seeded RNG (A {SITE_PROBS[0]:.0%}, "
                f"B {SITE_PROBS[1]:.0%}, C {SITE_PROBS[2]:.0%}); site C images degraded (Gaussian blur sigma "
                f"{BLUR_SIGMA}, contrast x{CONTRAST} around the mean, noise std {NOISE_STD}, clipped to [0, 1]) "
                "in train and eval alike. See models/recipes/digits_cnn.py."
            ),
            "token_layout": (
                f"token 0 is the CLS token, tokens 1..{grid * grid} are the {grid}x{grid} patches in row-major "
                f"order, each {ARCH_KWARGS['patch_size']}x{ARCH_KWARGS['patch_size']} pixels (the class exposes "
                "num_prefix_tokens, grid_size and patch_size)"
            ),
            "split": f"stratified by label, seeded; {1 - EVAL_FRACTION:.0%} train / {EVAL_FRACTION:.0%} eval",
            "n_train": int(len(tr)),
            "n_eval": int(len(ev)),
            "n_eval_by_site": {s: int(np.count_nonzero(site[ev] == s)) for s in SITES},
            "train_sample": f"train.npz / train_attributes.csv: a seeded subset of {sample['n']} of the {len(tr)} training images",
            "training": (
                f"AdamW lr {LR} (weight decay {WEIGHT_DECAY} on matrices only), {WARMUP_EPOCHS}-epoch linear "
                f"warm-up then cosine decay, {EPOCHS} epochs, batch {BATCH_SIZE}, cross-entropy, dropout "
                f"{ARCH_KWARGS['dropout']}, on normalized pixels; augmentation: random translation by up to {MAX_SHIFT} "
                "pixel(s), background fill"
            ),
            "train_accuracy": train_acc,
            "eval_accuracy": m["eval_accuracy"],
            "eval_accuracy_by_site": m["eval_accuracy_by_site"],
        },
    }
    parse_card(card, base_dir=out_dir, source=f"{NAME} card")  # validate before writing
    write_card(out_dir / "card.yaml", card)

    verify_written(out_dir, DigitsViT, m, NAME)

    return {"n_train": int(len(tr)), "n_eval": int(len(ev)), "n_eval_by_site": card["notes"]["n_eval_by_site"], "train_accuracy": train_acc, **m}
