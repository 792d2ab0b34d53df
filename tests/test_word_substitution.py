"""Greedy word-substitution attack: known answers on models keyed on words, identity terms untouched."""

from __future__ import annotations

import numpy as np
import pytest

from audits.engine import build_context
from audits.robustness.word_substitution import WordSubstitution
from tests.test_text_models import ID, bag_handle, text_data
from tests.text_fixtures import KeyedBag, make_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer().save_pretrained(str(folder))
    return folder


def _attack(model, texts, labels, groups=None, **params):
    data = text_data(model, texts, labels=labels, groups=groups)
    return WordSubstitution(max_rows=None, **params).run(model, data, build_context(model, data))


def test_a_model_keyed_on_one_word_is_broken_by_substituting_its_shipped_synonym(tokenizer_dir):
    model = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    texts = ["you are an idiot"] * 4 + ["thanks for fixing the article"] * 4
    result = _attack(model, texts, labels=[1] * 4 + [0] * 4, groups=["a"] * 4 + ["b"] * 4)
    assert result.clean_accuracy == 1.0
    # Every 'idiot' text flips with one swap ('idiot' -> 'fool', its first shipped synonym); nothing else can flip.
    np.testing.assert_array_equal(result.success, [True] * 4 + [False] * 4)
    assert result.attack_success_rate == pytest.approx(0.5) and result.attacked_accuracy == pytest.approx(0.5)
    assert result.mean_substitutions == 1.0
    assert result.words.to_dict("records") == [{"original": "idiot", "substitute": "fool", "uses": 4}]
    by = result.by_group.set_index("group")
    assert by.loc["a", "attack_success_rate"] == 1.0 and by.loc["b", "attack_success_rate"] == 0.0
    assert result.examples["flipped"].iloc[0] and result.examples["attacked"].iloc[0] == "you are an fool"
    m = {x.name: x for x in result.measurements()}
    assert m["attack_success_rate"].subject == "word_substitution/budget=3" and m["attack_success_rate"].value == pytest.approx(0.5)


def test_the_budget_bounds_the_substitutions(tokenizer_dir):
    # Either key decides: both must go, so one swap never flips and two always do.
    model = bag_handle(KeyedBag([ID["idiot"], ID["stupid"]]), tokenizer_dir)
    texts = ["you are a stupid idiot"] * 3
    assert _attack(model, texts, labels=[1] * 3, budget=1).attack_success_rate == 0.0
    result = _attack(model, texts, labels=[1] * 3, budget=2)
    assert result.attack_success_rate == 1.0 and (result.substitutions == 2).all()


def test_identity_terms_are_never_substituted_nor_substituted_in(tokenizer_dir, tmp_path):
    synonyms = tmp_path / "synonyms.yaml"
    synonyms.write_text("synonyms:\n  muslim: [christian]\n  idiot: [christian, muslim, fool]\n  friend: [neighbour]\n")
    keyed_identity = bag_handle(KeyedBag([ID["muslim"]]), tokenizer_dir)
    texts = ["my muslim friend says thanks"] * 3
    result = _attack(keyed_identity, texts, labels=[1] * 3, synonyms=str(synonyms))
    # Only 'muslim' decides, and it may not change: the attack fails, and every attacked text still names the group.
    assert result.attack_success_rate == 0.0 and result.attackable.all()
    assert all("muslim" in t for t in result.examples["attacked"]) and len(result.examples)
    keyed_insult = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    result = _attack(keyed_insult, ["you are an idiot", "the muslim says you are an idiot"], labels=[1, 1], synonyms=str(synonyms))
    assert result.attack_success_rate == 1.0
    assert set(zip(result.words["original"], result.words["substitute"], strict=True)) == {("idiot", "fool")}
    assert list(result.examples.sort_values("row")["attacked"]) == ["you are an fool", "the muslim says you are an fool"]


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="budget"):
        WordSubstitution(budget=0)


def test_the_policy_check_and_the_report_show_the_attack(tokenizer_dir):
    from audits.engine import run_audit
    from audits.policy import apply_policy, load_policy
    from audits.render.html import render_html
    from audits.spec import parse_spec
    from tests.test_robustness_strength import POLICY

    model = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    data = text_data(model, ["you are an idiot"] * 4 + ["thanks for fixing the article"] * 4, labels=[1] * 4 + [0] * 4)
    spec = parse_spec({"samples": 2, "probes": [{"name": "word_substitution", "params": {"max_rows": None}}]})
    report = apply_policy(run_audit(model, data, spec), load_policy(POLICY))
    (finding,) = [f for f in report.findings if f.check_id == "word_substitution_success"]
    assert finding.status == "fail"  # half of the correct decisions flip; the bar is 30%
    html = render_html(report)
    assert "Swaps used by the successful attacks" in html and "you are an fool" in html
