"""The published JSON Schema of scan plans; ``python -m audits.scan.schema`` regenerates ``schemas/scan_plan.schema.json``."""

from __future__ import annotations

import json
from pathlib import Path

from audits.scan.plan import ScanPlan

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "scan_plan.schema.json"


def plan_json_schema() -> dict:
    """The JSON Schema of a scan plan, including the string shorthand of a model line."""
    schema = ScanPlan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "audits scan plan"
    entry = schema["properties"]["models"]["items"]
    shorthand = {"type": "string", "description": "a zoo model name, or a card path (ends in .yaml/.yml or contains a /)"}
    schema["properties"]["models"]["items"] = {"anyOf": [shorthand, entry]}
    return schema


def plan_schema_text() -> str:
    """The schema as the committed file's text (sorted keys, two-space indent)."""
    return json.dumps(plan_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(plan_schema_text())
    print(f"wrote {SCHEMA_PATH}")
