"""Shipped word lists for text probes, validated when read, and whole-word replacement.

``identity_terms.yaml`` (identity groups and templates, for ``identity_terms``) and
``synonyms.yaml`` (for ``text_robustness``) live next to this file; each documents its
origin and limits in its header. Probes take a path to a replacement file of the same layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import yaml

from audits.errors import SpecError

LEXICON_DIR = Path(__file__).resolve().parent
IDENTITY_TERMS = LEXICON_DIR / "identity_terms.yaml"
SYNONYMS = LEXICON_DIR / "synonyms.yaml"


def match_case(original: str, replacement: str) -> str:
    """``replacement`` in the case pattern of ``original``: UPPER, Title or as given."""
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def word_pattern(terms: list[str]) -> re.Pattern:
    """Case-insensitive whole-word matcher for ``terms`` (longest first, so phrases win)."""
    alternatives = "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


def _read(path: Path, what: str) -> dict:
    if not path.is_file():
        raise SpecError(f"The {what} file {path} does not exist.", fix=f"Pass the path of a YAML file laid out like {LEXICON_DIR / path.name}.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"The {what} file {path} is not valid YAML: {exc}", fix="Fix the YAML syntax.") from None
    if not isinstance(raw, dict):
        raise SpecError(f"The {what} file {path} must be a YAML mapping.", fix=f"See {LEXICON_DIR / path.name}.")
    return raw


@dataclass(frozen=True)
class IdentityCategory:
    """Groups of one category whose term lists are aligned position by position."""

    name: str
    groups: dict[str, list[str | None]]
    adjectives: dict[str, str]

    def group_of(self, term: str) -> str | None:
        """The group one of whose terms ``term`` is (case-insensitive)."""
        lowered = term.lower()
        for group, terms in self.groups.items():
            if lowered in (t for t in terms if t is not None):
                return group
        return None

    @cached_property
    def pattern(self) -> re.Pattern:
        return word_pattern([t for terms in self.groups.values() for t in terms if t is not None])

    def counterpart(self, term: str, group: str) -> str | None:
        """``term``'s aligned term in ``group`` (None when that group has no counterpart)."""
        lowered = term.lower()
        for terms in self.groups.values():
            if lowered in terms:
                return self.groups[group][terms.index(lowered)]
        return None


@dataclass(frozen=True)
class IdentityLexicon:
    categories: list[IdentityCategory]
    templates: list[str]
    source: str

    def category(self, name: str) -> IdentityCategory:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)


@lru_cache(maxsize=8)
def load_identity_lexicon(path: str | None = None) -> IdentityLexicon:
    """The identity lexicon (the shipped one when ``path`` is None), checked for alignment."""
    file = Path(path) if path else IDENTITY_TERMS
    raw = _read(file, "identity-term lexicon")
    fix = f"Lay it out like {IDENTITY_TERMS}."
    categories = []
    seen: dict[str, str] = {}
    for name, spec in (raw.get("categories") or {}).items():
        groups = (spec or {}).get("groups") or {}
        if len(groups) < 2:
            raise SpecError(f"{file}: category {name!r} needs at least two groups.", fix=fix)
        terms = {g: [None if t is None else str(t).lower() for t in (v or {}).get("terms", [])] for g, v in groups.items()}
        adjectives = {g: str((v or {}).get("adjective") or "").strip() for g, v in groups.items()}
        lengths = {len(t) for t in terms.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise SpecError(f"{file}: the groups of {name!r} must list the same number of terms (aligned), got {sorted(lengths)}.", fix=fix)
        for g, adjective in adjectives.items():
            if not adjective:
                raise SpecError(f"{file}: group {name}/{g} has no adjective.", fix=fix)
            for t in set(terms[g]) - {None}:
                owner = seen.setdefault(f"{name}:{t}", g)
                if owner != g:
                    raise SpecError(f"{file}: term {t!r} belongs to two groups of {name!r} ({owner}, {g}).", fix="Give each term one group per category.")
        categories.append(IdentityCategory(name=str(name), groups=terms, adjectives=adjectives))
    templates = [str(t) for t in raw.get("templates") or []]
    bad = [t for t in templates if "{adjective}" not in t.lower()]
    if not categories or bad:
        raise SpecError(f"{file}: needs categories, and every template needs an {{adjective}} slot (bad: {bad[:2]}).", fix=fix)
    # The shipped lexicon is named by its place in the package, never by this machine's absolute path.
    source = f"audits/lexicons/{IDENTITY_TERMS.name} (shipped)" if path is None else str(path)
    return IdentityLexicon(categories=categories, templates=templates, source=source)


@lru_cache(maxsize=8)
def load_synonyms(path: str | None = None) -> dict[str, list[str]]:
    """word -> synonyms (lowercase), from the shipped list when ``path`` is None."""
    file = Path(path) if path else SYNONYMS
    raw = _read(file, "synonym list").get("synonyms")
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{file} has no 'synonyms' mapping (word -> list of synonyms).", fix=f"Lay it out like {SYNONYMS}.")
    table = {str(k).lower(): [str(s) for s in (v or []) if str(s).lower() != str(k).lower()] for k, v in raw.items()}
    return {k: v for k, v in table.items() if v}
