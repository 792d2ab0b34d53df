"""Model cards: the declared, validated description of a model and its evaluation data.

A card is YAML. It states everything the audit needs to run a model without
unpickling anything: the weights file and its format, the architecture (for a
state_dict), the input contract and the preprocessing (declared, never pickled),
and the evaluation data with its label and sensitive columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from audits.errors import CardError

Modality = Literal["image", "tabular", "text"]
ModelFormat = Literal["safetensors", "pytorch_state_dict", "torchscript", "torch_export", "huggingface"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """Per-channel ``(x - mean) / std`` applied inside the model handle, so audits work in pixel space."""

    mean: list[float]
    std: list[float]


class ImageInput(_Strict):
    kind: Literal["image"] = "image"
    channels: Annotated[int, Field(ge=1)]
    height: Annotated[int, Field(ge=1)]
    width: Annotated[int, Field(ge=1)]
    value_range: tuple[float, float] = (0.0, 1.0)
    normalization: Normalization | None = None

    @model_validator(mode="after")
    def _check(self) -> ImageInput:
        lo, hi = self.value_range
        if not lo < hi:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        norm = self.normalization
        if norm is not None:
            if len(norm.mean) != self.channels or len(norm.std) != self.channels:
                raise ValueError(
                    f"normalization mean/std need one value per channel ({self.channels}), "
                    f"got {len(norm.mean)} and {len(norm.std)}"
                )
            if any(s <= 0 for s in norm.std):
                raise ValueError("normalization std values must be > 0")
        return self

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


class NumericFeature(_Strict):
    """A numeric raw feature, scaled as ``(x - center) / scale`` before it reaches the model."""

    name: str
    type: Literal["numeric"] = "numeric"
    center: float = 0.0
    scale: Annotated[float, Field(gt=0)] = 1.0
    transform: Literal["none", "log1p"] = "none"


class CategoricalFeature(_Strict):
    """A categorical raw feature, one-hot encoded in the order of ``levels``."""

    name: str
    type: Literal["categorical"] = "categorical"
    levels: list[str]

    @model_validator(mode="after")
    def _check(self) -> CategoricalFeature:
        if len(self.levels) < 2:
            raise ValueError(f"categorical feature {self.name!r} needs at least 2 levels")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"categorical feature {self.name!r} has duplicate levels")
        return self


Feature = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="type")]


class TabularInput(_Strict):
    kind: Literal["tabular"] = "tabular"
    features: list[Feature]
    # What to do with a missing value: refuse the data, or fill it (numeric: the
    # feature's center; categorical: all-zero one-hot, i.e. "no level").
    missing: Literal["error", "impute"] = "error"

    @model_validator(mode="after")
    def _check(self) -> TabularInput:
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("a tabular input needs at least one feature")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def encoded_width(self) -> int:
        return sum(len(f.levels) if isinstance(f, CategoricalFeature) else 1 for f in self.features)


class TextInput(_Strict):
    """Raw text in one column, tokenized by the audit into padded token ids (N, max_length).

    ``tokenizer`` is a local folder of tokenizer files (``tokenizer.json`` or ``vocab.txt``
    plus ``tokenizer_config.json``, as ``save_pretrained`` writes them), relative to the
    card; a ``huggingface`` model may leave it out to use the files in its own folder.
    """

    kind: Literal["text"] = "text"
    text_column: str = "text"
    max_length: Annotated[int, Field(ge=4, le=8192)] = 128
    tokenizer: str | None = None

    @property
    def shape(self) -> tuple[int]:
        return (self.max_length,)


class Architecture(_Strict):
    """Where the ``nn.Module`` class of a state_dict lives: ``module:Class`` plus constructor kwargs."""

    target: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    kwargs: dict = Field(default_factory=dict)


class EvaluationData(_Strict):
    """The labelled evaluation set. Image: ``.npz`` with ``x`` (N,C,H,W) and ``y``, plus an
    optional CSV of per-sample attributes. Tabular: CSV or Parquet with raw columns. Text:
    CSV or Parquet with the text column, the label and any attribute columns."""

    path: str
    label_column: str = "y"
    attributes_path: str | None = None
    sensitive: list[str] = Field(default_factory=list)


class ModelCard(_Strict):
    """A validated model card. Relative paths resolve against the card's own folder."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    modality: Modality
    format: ModelFormat
    weights: str
    architecture: Architecture | None = None
    class_names: list[str]
    input: Annotated[ImageInput | TabularInput | TextInput, Field(discriminator="kind")]
    # What the network returns; probabilities are converted to log-space for attribution targets.
    output: Literal["logits", "probabilities"] = "logits"
    target_layer: str | None = None
    data: EvaluationData | None = None
    # Free-form provenance the audit copies into its report (training recipe, data notes).
    notes: dict = Field(default_factory=dict)
    # Set by load_card: the folder the card came from; relative paths resolve here.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if len(self.class_names) < 2:
            raise ValueError("class_names needs at least 2 classes")
        if self.input.kind != self.modality:
            raise ValueError(f"modality is {self.modality!r} but input.kind is {self.input.kind!r}")
        if self.format in ("safetensors", "pytorch_state_dict") and self.architecture is None:
            raise ValueError(
                f"format {self.format!r} holds only weights: add 'architecture: {{target: module:Class, kwargs: {{...}}}}'"
            )
        if self.format == "huggingface":
            if self.modality != "text":
                raise ValueError("format 'huggingface' (a save_pretrained folder) is supported for text models only")
            if self.architecture is not None:
                raise ValueError("format 'huggingface' takes its architecture from the folder's config.json: remove 'architecture'")
        elif isinstance(self.input, TextInput) and self.input.tokenizer is None:
            raise ValueError(
                f"a text model in format {self.format!r} needs 'input.tokenizer': the folder holding its tokenizer files "
                "(tokenizer.save_pretrained(folder))"
            )
        return self

    def resolve(self, path: str | Path) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def weights_path(self) -> Path:
        return self.resolve(self.weights)

    @property
    def tokenizer_path(self) -> Path | None:
        """Text models: the folder of tokenizer files (the model folder for ``huggingface``)."""
        if not isinstance(self.input, TextInput):
            return None
        return self.resolve(self.input.tokenizer) if self.input.tokenizer else self.weights_path

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a YAML model card; errors name the field and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CardError(f"Model card {path} does not exist.", fix="Pass the path of a card YAML file or a zoo model name.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CardError(f"Model card {path} is not valid YAML: {exc}", fix="Fix the YAML syntax.") from None
    if not isinstance(raw, dict):
        raise CardError(f"Model card {path} must be a YAML mapping.", fix="See models/zoo/*/card.yaml for examples.")
    return parse_card(raw, base_dir=path.parent.resolve(), source=str(path))


def parse_card(raw: dict, *, base_dir: Path, source: str = "card") -> ModelCard:
    try:
        return ModelCard.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(card)'}: {err['msg']}" for err in exc.errors()
        )
        raise CardError(
            f"Model card {source} is invalid: {problems}.",
            fix="Correct the named fields (see models/zoo/*/card.yaml and the README's 'Model cards' section).",
        ) from None
