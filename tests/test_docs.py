"""The README is a front page and the documentation cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from audits.probe_catalog import DOC_PATH, render_doc

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_is_a_front_page_of_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_the_probe_tables_in_the_docs_are_generated_from_the_registry():
    assert DOC_PATH.read_text() == render_doc(DOC_PATH.read_text()), "run: python -m audits.probe_catalog"


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.split("# --- README test command", 1)[1].splitlines()[1].strip()
    assert command in readme


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
