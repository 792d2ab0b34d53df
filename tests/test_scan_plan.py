"""Scan plans: validation with named fields and fixes, resolution of zoo names, cards and globs, the published schema; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from audits.scan.outcome import exit_code_for
from audits.scan.plan import PlanError, cron_trigger, load_plan, parse_plan, resolve_targets
from audits.scan.schema import SCHEMA_PATH, plan_json_schema, plan_schema_text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "scan.yaml"


def _plan(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_example_plan_scans_the_four_zoo_models():
    targets = resolve_targets(load_plan(EXAMPLE))
    assert [t.model_name for t in targets] == ["adult-mlp", "digits-cnn", "digits-vit", "toxicity-minilm"]
    assert [t.spec.samples for t in targets] == [4, 4, 4, 2]  # the plan's spec, overridden by one model line
    assert all(t.policy.name == "default" for t in targets)


def test_cards_globs_shorthands_and_per_model_policies_resolve(tmp_path, tabular_bundle, image_bundle):
    path = _plan(
        tmp_path,
        {
            "name": "mixed",
            "policy": {"name": "all", "checks": [{"check": "min_accuracy", "threshold": 0.5}]},
            "models": [
                "digits-cnn",
                str(tabular_bundle["card_path"].relative_to(tmp_path)),
                {"glob": "image/*.yaml", "policy": {"name": "strict", "checks": [{"check": "min_accuracy", "threshold": 0.99}]}, "spec": {"samples": 3}},
            ],
        },
    )
    targets = resolve_targets(load_plan(path))
    assert [(t.model_name, t.policy.name, t.spec.samples) for t in targets] == [
        ("digits-cnn", "all", None),
        ("tiny-mlp", "all", None),
        ("tiny-cnn", "strict", 3),
    ]
    assert targets[1].card_path == tabular_bundle["card_path"].resolve()
    again = type(targets[2]).from_dict(json.loads(json.dumps(targets[2].to_dict())))  # what a Ray worker receives
    assert again == targets[2]


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"name": "p", "models": ["no-such-model"]}, ["models[0].zoo: unknown model 'no-such-model'", "adult-mlp"]),
        ({"name": "p", "models": ["adult-mlp"], "schedule": {"cron": "61 * * * *"}}, ["schedule", "cron '61 * * * *' is invalid", "0 2 * * *"]),
        ({"name": "p", "models": ["adult-mlp"], "schedule": {"cron": "0 2 * *"}}, ["schedule", "has 4 fields"]),
        (
            {"name": "p", "models": ["adult-mlp"], "schedule": {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}},
            ["schedule.timezone", "unknown time zone 'Mars/Olympus'"],
        ),
        ({"name": "p", "models": [{"zoo": "adult-mlp", "card": "x.yaml"}]}, ["models.0", "exactly one of zoo, card or glob"]),
        ({"name": "p", "models": ["adult-mlp"], "notify": {"webhooks": [{"url": "ftp://x"}]}}, ["notify.webhooks.0.url", "http:// or https://"]),
        ({"name": "p", "models": [], "extra": 1}, ["models: List should have at least 1 item", "extra: Extra inputs are not permitted"]),
        ({"name": "p", "models": [{"glob": "nothing/*.yaml"}]}, ["models[0].glob", "matches no card file"]),
        ({"name": "p", "models": [{"card": "missing/card.yaml"}]}, ["models[0].card", "does not exist"]),
        ({"name": "p", "models": ["adult-mlp"], "spec": {"samples": 0}}, ["spec", "samples"]),
        ({"name": "p", "models": ["adult-mlp"], "policy": {"checks": [{"check": "no_such_check"}]}}, ["policy", "checks"]),
        ({"name": "p", "models": ["adult-mlp", {"zoo": "adult-mlp"}]}, ["models[1]: model 'adult-mlp' is already in the plan (models[0])"]),
        ({"name": "bad name!", "models": ["adult-mlp"]}, ["name: String should match pattern"]),
    ],
)
def test_bad_plans_get_one_message_naming_the_field_and_the_fix(tmp_path, raw, names):
    with pytest.raises(PlanError) as info:
        resolve_targets(load_plan(_plan(tmp_path, raw)))
    message = f"{info.value.problem} Fix: {info.value.fix}"
    for name in names:
        assert name in message, message
    assert info.value.fix


def test_a_plan_that_is_not_a_mapping_or_not_there_is_refused(tmp_path):
    with pytest.raises(PlanError, match="does not exist"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- adult-mlp\n")
    with pytest.raises(PlanError, match="must be a YAML mapping"):
        load_plan(tmp_path / "list.yaml")
    with pytest.raises(PlanError, match="plan_version 2 is not supported"):
        parse_plan({"plan_version": 2, "name": "p", "models": ["adult-mlp"]})


def test_cron_reads_five_fields_or_six_with_seconds_in_the_plans_time_zone():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    utc = ZoneInfo("UTC")
    nightly = cron_trigger("0 2 * * *", "Europe/Berlin")  # 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer
    assert nightly.get_next_fire_time(None, datetime(2026, 1, 10, 12, 0, tzinfo=utc)).astimezone(utc) == datetime(2026, 1, 11, 1, 0, tzinfo=utc)
    assert nightly.get_next_fire_time(None, datetime(2026, 7, 10, 12, 0, tzinfo=utc)).astimezone(utc) == datetime(2026, 7, 11, 0, 0, tzinfo=utc)
    every_two = cron_trigger("*/2 * * * * *", "UTC")
    first = every_two.get_next_fire_time(None, datetime(2026, 1, 1, 0, 0, 1, tzinfo=utc))
    assert (first.second, first.minute) == (2, 0)


def test_the_published_schema_is_current_and_accepts_the_example():
    assert SCHEMA_PATH.read_text() == plan_schema_text(), "run: python -m audits.scan.schema"
    validator = jsonschema.Draft202012Validator(plan_json_schema())
    validator.validate(yaml.safe_load(EXAMPLE.read_text()))
    validator.validate({"name": "short", "models": ["adult-mlp", {"card": "cards/x.yaml"}]})
    assert list(validator.iter_errors({"name": "p", "models": [{"zoo": "x", "colour": 1}]}))


@pytest.mark.parametrize(
    ("verdicts", "fail_on", "code"),
    [
        (["pass", "pass"], "fail", 0),
        (["pass", "warn"], "fail", 0),
        (["pass", "warn"], "warn", 1),
        (["fail", "pass"], "fail", 1),
        (["fail", "pass"], "never", 0),
        (["fail", "crashed"], "fail", 3),
        (["pass", "crashed"], "never", 3),
        (["not_evaluated"], "warn", 0),
    ],
)
def test_exit_codes(verdicts, fail_on, code):
    assert exit_code_for(verdicts, fail_on) == code


def test_the_deployment_and_ci_recipes_parse_and_their_plans_validate():
    docs = Path(__file__).resolve().parent.parent / "docs"
    manifests = list(yaml.safe_load_all((docs / "deploy" / "kubernetes-cronjob.yaml").read_text()))
    assert [m["kind"] for m in manifests] == ["Secret", "ConfigMap", "CronJob"]
    plan = parse_plan(yaml.safe_load(manifests[1]["data"]["scan.yaml"]), source="ConfigMap")
    assert [t.model_name for t in resolve_targets(plan)] == ["adult-mlp", "digits-cnn", "digits-vit", "toxicity-minilm"]
    cron = manifests[2]["spec"]
    cron_trigger(cron["schedule"], cron["timeZone"])
    assert cron["concurrencyPolicy"] == "Forbid"
    command = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["audits", "scan", "--plan", "/plan/scan.yaml"]
    workflow = yaml.safe_load((docs / "ci" / "github-actions.yml").read_text())
    steps = " ".join(s.get("run", "") for s in workflow["jobs"]["scan"]["steps"])
    assert "audits scan --plan examples/scan.yaml" in steps and "$GITHUB_STEP_SUMMARY" in steps
    gitlab = yaml.safe_load((docs / "ci" / "gitlab-ci.yml").read_text())
    assert gitlab["audit-scan"]["artifacts"]["reports"]["junit"] == "audit-junit.xml"
    # every CLI flag the recipes use exists
    from audits.cli import build_parser

    build_parser().parse_args(command[1:])
    build_parser().parse_args(["scan", "--plan", "p.yaml", "--fail-on", "fail", "--junit", "j.xml", "--summary", "s.md"])
