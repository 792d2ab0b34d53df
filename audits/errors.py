"""User-facing errors. Each names the problem and the fix; the CLI prints them without a traceback."""

from __future__ import annotations


class AuditError(Exception):
    """Base of every error caused by the user's input (cards, data, specs, model files)."""

    def __init__(self, problem: str, *, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


class CardError(AuditError):
    """The model card is missing, malformed or inconsistent."""


class ModelLoadError(AuditError):
    """The weights cannot be loaded safely or do not match the card."""


class UnsafeModelError(ModelLoadError):
    """The file would need arbitrary code (pickle globals) to load; it is refused."""


class DataError(AuditError):
    """The evaluation data is missing, malformed or inconsistent with the card."""


class SpecError(AuditError):
    """The audit spec is invalid."""


class ReportError(AuditError):
    """A report file cannot be read (wrong schema, corrupt JSON)."""
