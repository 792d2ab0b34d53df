"""The probe tables of ``docs/probes.md``, generated from the registry.

``python -m audits.probe_catalog`` rewrites the block between the markers in
``docs/probes.md`` and the render catalogue (``audits/render/probes.json``, the probes' titles
readable without importing torch); a test fails when the committed tables differ from the registry, so the
documentation cannot drift from the code (like the report schema's currency test).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from audits.probes import CATEGORY_ORDER, Probe, registered_probes

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "probes.md"
START, END = "<!-- probe-tables:start -->", "<!-- probe-tables:end -->"
_HEADINGS = {"explanation": "Explanation probes", "robustness": "Robustness probes", "fairness": "Fairness probes", "concepts": "Concept probes"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _parameters(cls: type[Probe]) -> str:
    sig = inspect.signature(cls.__init__)
    out = []
    for name, p in sig.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append(f"`{name}`" if p.default is inspect.Parameter.empty else f"`{name}={p.default!r}`")
    return ", ".join(out) or "none"


def probe_tables() -> str:
    """Markdown tables of every registered probe, one per category, in the engine's run order."""
    probes = registered_probes()
    blocks = []
    for category in CATEGORY_ORDER:
        rows = [
            "| probe | modalities | default for | result | what it measures | parameters |",
            "|---|---|---|---|---|---|",
        ]
        for name, cls in sorted(probes.items()):
            if cls.category != category:
                continue
            result_type = getattr(cls, "result_type", None)
            result = f"`{result_type.__name__}`" if result_type is not None else ""
            what = cls.description or cls.title or (inspect.getdoc(cls) or "").split("\n\n")[0]
            default = ", ".join(cls.default_for) or "no"
            rows.append(f"| `{name}` | {', '.join(cls.modalities)} | {default} | {result} | {_cell(what)} | {_parameters(cls)} |")
        blocks.append(f"### {_HEADINGS[category]}\n\n" + "\n".join(rows))
    return "\n\n".join(blocks)


def render_doc(text: str) -> str:
    """``text`` with the generated block replaced by the registry's current tables."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{probe_tables()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Rewrite every file generated from the registry: the docs' tables and the render catalogue."""
    from audits.render.catalog import CATALOG, render_catalog

    DOC_PATH.write_text(render_doc(DOC_PATH.read_text()))
    CATALOG.write_text(render_catalog(), encoding="utf-8")
    print(f"wrote {DOC_PATH} and {CATALOG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
