"""Model cards: the declared, validated description of a model and its evaluation data.

A card is YAML. It states everything the audit needs to run a model without
unpickling anything: the weights file and its format, the architecture (for a
state_dict), the input contract and the preprocessing (declared, never pickled),
and the evaluation data with its label and sensitive columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audits.config_files import bounded_size, format_validation_errors, load_yaml_file, parse_yaml
from audits.errors import CardError

# The card's free-form notes are copied into every report; the zoo's longest are ~2,000 characters.
MAX_NOTES_CHARS = 64_000

Modality = Literal["image", "tabular", "text"]
ModelFormat = Literal["safetensors", "pytorch_state_dict", "torchscript", "torch_export", "huggingface", "predictions"]


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
    """A categorical raw feature, one-hot encoded in the order of ``levels``.

    ``reference``: a level encoded as all zeros (drop-first encoding); the block then has one
    column per other level. ``columns``: the data is already one-hot encoded: these are its
    columns, one per level in ``levels`` order (without the ``reference`` level when given); the
    audit decodes them into the attribute ``name`` (so it can be sensitive, flipped and sliced).
    """

    name: str
    type: Literal["categorical"] = "categorical"
    levels: list[str]
    reference: str | None = None
    columns: list[str] | None = None

    @property
    def encoded_levels(self) -> list[str]:
        """The levels that have a column, in block order (all but ``reference``)."""
        return [lv for lv in self.levels if lv != self.reference]

    @field_validator("levels", mode="before")
    @classmethod
    def _whole_numbers_as_text(cls, value: object) -> object:
        # YAML reads `levels: [0, 1, 2]` as integers; the data's codes compare as text ("0"), so
        # integers are taken as written. Floats and booleans (`yes` -> True) are ambiguous: refused.
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check(self) -> CategoricalFeature:
        if len(self.levels) < 2:
            raise ValueError(f"categorical feature {self.name!r} needs at least 2 levels")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"categorical feature {self.name!r} has duplicate levels")
        if self.reference is not None and self.reference not in self.levels:
            raise ValueError(f"categorical feature {self.name!r}: reference {self.reference!r} is not one of its levels {self.levels}")
        if self.columns is not None and len(self.columns) != len(self.encoded_levels):
            what = f"one per level other than the reference {self.reference!r}" if self.reference else "one per level"
            raise ValueError(
                f"categorical feature {self.name!r} lists {len(self.columns)} one-hot columns for {len(self.encoded_levels)} encoded levels "
                f"{self.encoded_levels} ({what}, in that order)"
            )
        return self


Feature = Annotated[NumericFeature | CategoricalFeature, Field(discriminator="type")]


class TabularInput(_Strict):
    kind: Literal["tabular"] = "tabular"
    features: list[Feature]
    # What to do with a missing value: refuse the data, or fill it (numeric: the
    # feature's center; categorical: all-zero one-hot, i.e. "no level").
    missing: Literal["error", "impute"] = "error"
    # The numeric columns are already standardised (the model reads them as they are): no center/scale/transform.
    standardised: bool = False

    @model_validator(mode="after")
    def _check(self) -> TabularInput:
        names = [f.name for f in self.features]
        if self.standardised:
            scaled = [f.name for f in self.features if isinstance(f, NumericFeature) and (f.center != 0 or f.scale != 1 or f.transform != "none")]
            if scaled:
                raise ValueError(f"standardised: true says the numeric inputs are used as they are, but {scaled} declare a center, scale or transform: remove one or the other")
        clash = sorted({c for f in self.features if isinstance(f, CategoricalFeature) and f.columns for c in f.columns} & set(names))
        if clash:
            raise ValueError(f"one-hot columns {clash} are also declared as features: list each column once")
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
        return sum(len(f.encoded_levels) if isinstance(f, CategoricalFeature) else 1 for f in self.features)


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


class PredictionColumns(_Strict):
    """``format: predictions``: where the evaluation file holds the decisions of a system that is not loaded.

    ``score_column``: the score of the favourable class (``favourable_class``, else class 1), a
    probability in [0, 1] (``score_kind: probability``) or any number (``score``); the decision is
    ``score >= threshold``. ``label_column``: the decided class (a class name or index). With both,
    they must agree.
    """

    score_column: str | None = None
    label_column: str | None = None
    score_kind: Literal["probability", "score"] = "probability"
    threshold: float = 0.5

    @model_validator(mode="after")
    def _check(self) -> PredictionColumns:
        if self.score_column is None and self.label_column is None:
            raise ValueError("predictions needs score_column (a score per row) and/or label_column (the decided class per row)")
        if self.score_kind == "probability" and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold} must lie in (0, 1) for probability scores (or set score_kind: score)")
        return self


class EvaluationData(_Strict):
    """The labelled evaluation set. Image: ``.npz`` with ``x`` (N,C,H,W) and ``y``, plus an
    optional CSV of per-sample attributes. Tabular: CSV or Parquet with raw columns. Text:
    CSV or Parquet with the text column, the label and any attribute columns."""

    path: str
    label_column: str = "y"
    attributes_path: str | None = None
    sensitive: list[str] = Field(default_factory=list)
    # Per sensitive attribute, the group others are compared with (default: its largest group).
    reference_groups: dict[str, str] = Field(default_factory=dict)

    @field_validator("reference_groups", mode="before")
    @classmethod
    def _reference_as_text(cls, value: object) -> object:
        # Group values are compared as text (the data's `1` is the group "1").
        if isinstance(value, dict):
            return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check_reference(self) -> EvaluationData:
        unknown = sorted(set(self.reference_groups) - set(self.sensitive))
        if unknown:
            raise ValueError(f"reference_groups names {unknown}, which are not sensitive attributes {self.sensitive}")
        return self
    # A sample of the training data in the same layout (membership inference compares the model on
    # it with the evaluation data); for images its attributes come from ``train_attributes_path``.
    train_path: str | None = None
    train_attributes_path: str | None = None


class ModelCard(_Strict):
    """A validated model card. Relative paths resolve against the card's own folder."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    modality: Modality
    format: ModelFormat
    # The model file or folder; not used by ``format: predictions`` (the decisions are in the data).
    weights: str = ""
    architecture: Architecture | None = None
    class_names: list[str]
    input: Annotated[ImageInput | TabularInput | TextInput, Field(discriminator="kind")]
    # What the network returns; probabilities are converted to log-space for attribution targets.
    output: Literal["logits", "probabilities"] = "logits"
    # The outcome a person wants (a loan granted, a comment kept: "non-toxic"). Fairness probes count
    # selection rates, false positives and flips towards it. None: class 1 of a binary model, with a note.
    favourable_class: str | None = None
    target_layer: str | None = None
    # format: predictions only: the columns of the evaluation file that hold the decisions.
    predictions: PredictionColumns | None = None
    data: EvaluationData | None = None
    # Further weights files of the same architecture and format trained with other seeds: with
    # ``weights`` they form a deep ensemble (the uncertainty probes use it; the audit runs ``weights``).
    ensemble: list[str] = Field(default_factory=list)
    # Free-form provenance the audit copies into its report (training recipe, data notes).
    notes: dict = Field(default_factory=dict)
    # Set by load_card: the folder the card came from; relative paths resolve here.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("notes", mode="before")
    @classmethod
    def _bounded_notes(cls, value: object) -> object:
        size = bounded_size(value, MAX_NOTES_CHARS)
        if size > MAX_NOTES_CHARS:
            raise ValueError(f"notes hold more than {MAX_NOTES_CHARS:,} characters; keep them to a short provenance record (link longer documents)")
        return value

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if len(self.class_names) < 2:
            raise ValueError("class_names needs at least 2 classes")
        if self.favourable_class is not None and self.favourable_class not in self.class_names:
            raise ValueError(f"favourable_class {self.favourable_class!r} is not one of class_names {self.class_names}: name one of them")
        if self.format == "predictions":
            if self.predictions is None:
                raise ValueError("format 'predictions' needs a 'predictions:' section naming the score and/or label columns of the data")
            if self.modality != "tabular" or self.data is None:
                raise ValueError("format 'predictions' needs modality 'tabular' and a 'data:' section (the file holding the decisions)")
            if self.architecture is not None or self.weights:
                raise ValueError("format 'predictions' audits decisions, not a model: remove 'weights' and 'architecture'")
            if self.predictions.score_column is not None and len(self.class_names) != 2:
                raise ValueError("a score column needs a binary decision (two class_names); give label_column for more classes")
        elif self.predictions is not None:
            raise ValueError(f"'predictions' belongs to format 'predictions' cards only, not to format {self.format!r}: remove it")
        elif not self.weights:
            raise ValueError(f"format {self.format!r} needs 'weights': the model file (relative to the card)")
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
        """The model file; for ``format: predictions`` the evaluation file, which holds the decisions audited."""
        if self.format == "predictions" and self.data is not None:
            return self.resolve(self.data.path)
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
    raw = load_yaml_file(path, error=CardError, what="model card", missing_fix="Pass the path of a card YAML file or a zoo model name.")
    if not isinstance(raw, dict):
        raise CardError(f"Model card {path} must be a YAML mapping.", fix="See models/zoo/*/card.yaml for examples.")
    return parse_card(raw, base_dir=path.parent.resolve(), source=str(path))


def parse_card_text(text: str | bytes, *, source: str) -> dict:
    """The mapping in an uploaded card's YAML text (safe, alias-free, size-capped), not yet validated."""
    raw = parse_yaml(text, source=source, error=CardError, what="model card")
    if not isinstance(raw, dict):
        raise CardError(f"The model card {source} must be a YAML mapping.", fix="See models/zoo/*/card.yaml for examples.")
    return raw


def parse_card(raw: dict, *, base_dir: Path, source: str = "card", confine: bool = False) -> ModelCard:
    """Validate a card mapping; relative paths resolve against ``base_dir``.

    With ``confine`` (uploaded cards), every path the card names must stay inside ``base_dir``.
    """
    try:
        card = ModelCard.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as exc:
        raise CardError(
            f"Model card {source} is invalid: {format_validation_errors(exc, raw, root='(card)')}.",
            fix="Correct the named fields (see models/zoo/*/card.yaml and docs/cards.md).",
        ) from None
    if confine:
        check_confined(card, source=source)
    return card


def card_paths(card: ModelCard) -> dict[str, str]:
    """Every path the card names, by its field (``weights``, ``data.path``, ``input.tokenizer``, ...)."""
    paths = {"weights": card.weights} if card.weights else {}
    if card.data is not None:
        paths["data.path"] = card.data.path
        if card.data.attributes_path:
            paths["data.attributes_path"] = card.data.attributes_path
        if card.data.train_path:
            paths["data.train_path"] = card.data.train_path
        if card.data.train_attributes_path:
            paths["data.train_attributes_path"] = card.data.train_attributes_path
    for i, weights in enumerate(card.ensemble):
        paths[f"ensemble[{i}]"] = weights
    if isinstance(card.input, TextInput) and card.input.tokenizer:
        paths["input.tokenizer"] = card.input.tokenizer
    return paths


def check_confined(card: ModelCard, *, source: str = "card") -> None:
    """Refuse a card naming a path outside its own folder (absolute, ``..``, or through a symlink).

    An uploaded card is untrusted: a tokenizer at ``/srv/other-model/tokenizer`` or
    ``../../secrets`` would make the server read files the uploader has no claim to.
    """
    root = card.base_dir.resolve()
    for field_name, value in card_paths(card).items():
        target = card.resolve(value).resolve()
        if not target.is_relative_to(root):
            raise CardError(
                f"Model card {source}: {field_name} {value!r} points outside the card's own folder.",
                fix=f"Upload the file(s) with the card and name them relative to it (e.g. {field_name}: {Path(value).name or 'name'}).",
            )
