"""The demo zoo: model folders under models/zoo/, each with a card.yaml."""

from __future__ import annotations

from pathlib import Path

from audits.errors import CardError
from models.card import ModelCard, load_card

ZOO_DIR = Path(__file__).resolve().parent / "zoo"


def zoo_names() -> list[str]:
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in ZOO_DIR.glob("*/card.yaml"))


def zoo_cards() -> list[ModelCard]:
    return [load_card(ZOO_DIR / name / "card.yaml") for name in zoo_names()]


def resolve_card(model: str) -> ModelCard:
    """A zoo model name, or the path of a card YAML (or of a folder holding card.yaml)."""
    path = Path(model)
    if path.is_dir() and (path / "card.yaml").is_file():
        return load_card(path / "card.yaml")
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_card(path)
    if model in zoo_names():
        return load_card(ZOO_DIR / model / "card.yaml")
    raise CardError(
        f"{model!r} is neither a zoo model nor a card file.",
        fix=f"Use one of the zoo models ({', '.join(zoo_names()) or 'none built: run python -m models.build_zoo'}) or the path of a card YAML.",
    )
