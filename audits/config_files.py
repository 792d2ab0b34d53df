"""Loading the YAML files users write (model cards, audit specs, policies) and explaining their errors.

One place decides how untrusted YAML is read: the safe loader (no Python objects), no aliases
(``*name``; a "billion laughs" file of a few hundred bytes expands to gigabytes once anything
walks it), a size cap on the file, and parse errors turned into one message with the fix.
Validation errors from pydantic are formatted here too, naming each field by its path and,
inside lists of named items, by the item's name (``input.tabular.features[1] ('workclass')``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from audits.errors import AuditError

# Cards, specs and policies are hand-written and a few KB; the largest zoo card is ~6 KB.
MAX_YAML_BYTES = 1 << 20
# How many validation problems one message lists before it says "and N more".
MAX_LISTED_PROBLEMS = 8


class _AliasRefused(yaml.YAMLError):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(f"alias *{anchor} on line {line}")
        self.anchor, self.line = anchor, line


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing aliases at composition, before anything is built from them."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]  # PyYAML's own signature
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(str(event.anchor), event.start_mark.line + 1)
        return super().compose_node(parent, index)


def parse_yaml(text: str | bytes, *, source: str, error: type[AuditError], what: str = "file") -> Any:
    """Parse YAML ``text`` safely: no Python objects, no aliases, at most ``MAX_YAML_BYTES``.

    Parameters
    ----------
    text
        The YAML document (bytes must be UTF-8).
    source
        Its name in messages (a path or an uploaded file name).
    error
        The ``AuditError`` subclass to raise (``CardError``, ``SpecError``, ``PolicyError``).
    what
        What the document is, for messages ("model card", "spec file", ...).

    Raises
    ------
    AuditError
        Of type ``error``, naming the problem and the fix.
    """
    size = len(text)
    if size > MAX_YAML_BYTES:
        raise error(
            f"The {what} {source} is {size / 2**20:.1f} MB; {what}s are limited to {MAX_YAML_BYTES // 2**20} MB.",
            fix="Keep it to the settings the tool reads; move long notes or data into files of their own.",
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"The {what} {source} is not UTF-8 text.", fix="Save it as UTF-8 YAML.") from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506  # a SafeLoader subclass
    except _AliasRefused as exc:
        raise error(
            f"The {what} {source} uses the YAML alias *{exc.anchor} (line {exc.line}); aliases and '<<' merge keys are not accepted "
            "(a few hundred bytes of nested aliases expand to gigabytes).",
            fix="Write each value out in full instead of referring to an anchor (&name / *name).",
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"The {what} {source} is not valid YAML: {exc}", fix="Fix the YAML syntax.") from None
    except RecursionError:
        raise error(
            f"The {what} {source} is nested too deeply to read.", fix="Flatten the structure; cards, specs and policies need only a few levels."
        ) from None


def load_yaml_file(path: str | Path, *, error: type[AuditError], what: str, missing_fix: str) -> Any:
    """Read and parse a YAML file with :func:`parse_yaml`, refusing a missing or oversized file before reading it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"The {what} {path} does not exist.", fix=missing_fix)
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:  # checked before reading: the file may be huge
        raise error(
            f"The {what} {path} is {size / 2**20:.1f} MB; {what}s are limited to {MAX_YAML_BYTES // 2**20} MB.",
            fix="Keep it to the settings the tool reads; move long notes or data into files of their own.",
        )
    return parse_yaml(path.read_bytes(), source=str(path), error=error, what=what)


def bounded_size(value: Any, limit: int) -> int:
    """Characters of ``value`` written out as JSON-like text, counting at most past ``limit``.

    Walks containers iteratively and stops as soon as the count exceeds ``limit``, so a structure
    sharing one list thousands of times (what YAML aliases build) costs ``limit`` steps, not its
    expanded size, and deep nesting cannot exhaust the stack.
    """
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, dict):
            total += 2 + len(item)
            for k, v in item.items():
                stack.append(k)
                stack.append(v)
        elif isinstance(item, (list, tuple)):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += len(str(item)) if isinstance(item, str) else 8
    return total


def _render_location(loc: tuple, raw: Any) -> str:
    """``('input', 'tabular', 'features', 1, 'categorical', 'levels', 0)`` -> ``input.tabular.features[1] ('workclass').categorical.levels[0]``."""
    out = ""
    current = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            current = current[part] if isinstance(current, list) and -len(current) <= part < len(current) else None
            name = current.get("name") if isinstance(current, dict) else None
            if isinstance(name, str) and name:
                out += f" ({name!r})"
        else:
            out += f".{part}" if out else str(part)
            # A union's tag (input.tabular) is in the location but not in the data: stay put.
            if isinstance(current, dict) and part in current:
                current = current[part]
    return out


def _fix_for(err: dict) -> str:
    """A specific fix for the error types users hit most; empty when the generic fix says it."""
    kind, value = err.get("type", ""), err.get("input")
    if kind == "string_type" and isinstance(value, (bool, int, float)):
        return f" (YAML read {value!r} as a {type(value).__name__}: quote it, e.g. '{str(value).lower() if isinstance(value, bool) else value}')"
    if kind == "extra_forbidden":
        return " (not a known field: check its spelling and indentation)"
    if kind == "missing":
        return " (required)"
    return ""


def format_validation_errors(exc: ValidationError, raw: Any, *, root: str) -> str:
    """One line per problem: the field's path (list items named by their ``name``), the message and a fix."""
    errors = exc.errors()
    lines = []
    for err in errors[:MAX_LISTED_PROBLEMS]:
        where = _render_location(tuple(err["loc"]), raw) or root
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}{_fix_for(err)}")
    if len(errors) > MAX_LISTED_PROBLEMS:
        lines.append(f"and {len(errors) - MAX_LISTED_PROBLEMS} more")
    return "; ".join(lines)
