"""Explanation trust: known answers on tiny models and the trained zoo CNN."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audits.data import load_data
from audits.engine import build_context, run_audit
from audits.explain._trust_metrics import Features, faithfulness, gini, spearman_abs
from audits.explain._trust_rerun import parameter_layers, randomized_copy
from audits.explain.base import AttributionProbe
from audits.policy import evaluate_policy, load_policy
from audits.probes import PROBES, make_probe, register
from audits.results import AttributionResult, TrustResult
from audits.spec import AuditSpec
from models.card import load_card
from models.loader import load_model, wrap_model
from models.registry import resolve_card


class _InputMap(AttributionProbe):
    """A 'map' that is just the input (summed over channels): insensitive to model and class."""

    name = "test_input_map"
    modalities = ("image",)

    def _run(self, model, data, context) -> AttributionResult:
        return self.result(model, data, context, data.x[context.sample_indices].copy())


@pytest.fixture
def input_map_probe():
    register(_InputMap)
    yield _InputMap
    PROBES.pop(_InputMap.name, None)


def _trust(model, data, context, methods: list[str], **params) -> TrustResult:
    earlier = tuple(make_probe(m).run(model, data, context) for m in methods)
    return make_probe("explanation_trust", params).run(model, data, dataclasses.replace(context, earlier=earlier))


def test_true_contributions_score_best_on_deletion_for_a_linear_model(tabular_bundle):
    card = load_card(tabular_bundle["card_path"])
    torch.manual_seed(1)
    model = wrap_model(nn.Linear(7, 2), card)
    data = load_data(card)
    w = model.network.weight.detach().numpy().astype(np.float64)
    x = data.x[:10].astype(np.float64)
    mean = data.x.mean(axis=0)
    targets = model.logits(data.x[:10]).argmax(axis=1)
    # Contribution of each raw feature to logit(target) - logit(other), against the removal baseline (the mean).
    per_column = (w[targets] - w[1 - targets]) * (x - mean)
    truth = np.stack([per_column[:, g].sum(axis=1) for g in data.feature_groups], axis=1)
    index = np.full(7, -1)
    for g, cols in enumerate(data.feature_groups):
        index[cols] = g
    features = Features(index=index, baseline=mean, n=len(data.feature_groups), valid=np.ones((10, 4), dtype=bool))
    rng = np.random.default_rng(0)
    rivals = {"truth": truth, "reversed": -truth, "magnitude": np.abs(truth), "random": rng.normal(size=truth.shape)}
    auc = {
        k: faithfulness(model, x, targets, m, features, steps=4, n_random=2, corr_runs=16, corr_fraction=0.5, rng=np.random.default_rng(1))
        for k, m in rivals.items()
    }
    for name in ("reversed", "magnitude", "random"):
        assert (auc["truth"]["deletion_auc"] <= auc[name]["deletion_auc"] + 1e-9).all(), name
    assert auc["truth"]["deletion_auc"].mean() < auc["reversed"]["deletion_auc"].mean()
    assert auc["truth"]["deletion_score"].mean() > 0
    # Removing a subset lowers the target's logit by exactly the subset's contributions to it: correlation 1.
    own = np.stack([(w[targets][:, cols] * (x - mean)[:, cols]).sum(axis=1) for cols in data.feature_groups], axis=1)
    got = faithfulness(model, x, targets, own, features, steps=4, n_random=2, corr_runs=16, corr_fraction=0.5, rng=np.random.default_rng(2))
    np.testing.assert_allclose(got["faithfulness_correlation"], 1.0, atol=1e-5)


def test_a_map_equal_to_the_input_fails_the_randomization_checks(image_bundle, input_map_probe):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, seed=0, sample_indices=np.arange(6))
    result = _trust(model, data, context, ["test_input_map", "saliency"])
    assert result.mean("test_input_map", "model_randomization_similarity") == pytest.approx(1.0)
    assert result.mean("test_input_map", "random_logit_similarity") == pytest.approx(1.0)
    assert result.verdict("test_input_map")["randomization"] == "fail"
    assert "insensitive to the model's weights" in result.reason("test_input_map")
    assert result.mean("saliency", "model_randomization_similarity") < 0.9


def test_randomization_works_on_a_copy_and_leaves_the_audited_model_alone(image_bundle):
    card = load_card(image_bundle["card_path"])
    model = load_model(card)
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    layers = parameter_layers(model.network)
    clone = randomized_copy(model, layers, seed=0)
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, before[k])
    changed = [k for k, v in clone.network.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and clone.network is not model.network and not clone.network.training
    calls = model.meter.calls
    clone.logits(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert model.meter.calls == calls + 1  # the copy's calls count in the probe's cost


def test_every_methods_verdict_drops_on_a_randomized_copy_of_digits_cnn():
    card = resolve_card("digits-cnn")
    model, data = load_model(card), load_data(card)
    idx = np.array([int(np.flatnonzero(data.y == c)[0]) for c in range(10)])
    methods = [p.name for p in AuditSpec().probe_specs("image") if PROBES[p.name].category == "explanation" and PROBES[p.name]().supports(model, data)]
    assert {"occlusion", "integrated_gradients", "lime_image"} <= set(methods)
    params = dict(n_samples=4, noise_draws=1, cascade_stages=1)
    trained = _trust(model, data, build_context(model, data, seed=0, sample_indices=idx), methods, **params)
    random_model = randomized_copy(model, parameter_layers(model.network), seed=1)
    # The randomized model audited as itself: its own predictions are the explained classes.
    shuffled = _trust(random_model, data, build_context(random_model, data, seed=0, sample_indices=idx), methods, **params)
    assert trained.model_learned and trained.model_skill > 0.9
    assert shuffled.model_learned is False and abs(shuffled.model_skill) < 0.1
    for m in methods:
        assert shuffled.score(m) < trained.score(m), (m, trained.verdict(m), shuffled.verdict(m))
        assert shuffled.reason(m).startswith("Not trusted: the model predicts at chance level")
    # Maps stay faithful to the random model they measure (why the gate, not faithfulness, drops them).
    assert shuffled.verdict("occlusion")["faithfulness"] != "fail"
    # On the trained model the known pattern: IG is faithful but barely reacts to randomized weights.
    assert trained.verdict("integrated_gradients")["faithfulness"] == "pass"
    assert trained.mean("integrated_gradients", "model_randomization_similarity") > trained.mean("saliency", "model_randomization_similarity")


def test_same_seed_same_scores_and_another_seed_other_draws(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, seed=0, sample_indices=np.arange(4))
    a, b = (_trust(model, data, context, ["saliency"]) for _ in range(2))
    for key, values in a.metrics["saliency"].items():
        np.testing.assert_array_equal(values, b.metrics["saliency"][key])
    c = _trust(model, data, dataclasses.replace(context, seed=5), ["saliency"])
    assert not np.array_equal(a.metrics["saliency"]["faithfulness_correlation"], c.metrics["saliency"]["faithfulness_correlation"])


def test_the_trust_policy_judges_each_method_on_the_three_properties(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    spec = AuditSpec(probes=[{"name": n} for n in ("saliency", "grad_cam", "explanation_trust")])
    report = run_audit(model, data, spec)
    assert [type(r) for r in report.robustness] == [TrustResult]
    trust_policy = Path(__file__).resolve().parents[1] / "audits" / "policies" / "trust.yaml"
    findings = [f for f in evaluate_policy(report, load_policy(trust_policy)) if f.check_id.startswith("explanation_")]
    assert {(f.check_id, f.subject) for f in findings} == {
        (c, m) for c in ("explanation_faithfulness", "explanation_randomization", "explanation_stability") for m in ("saliency", "grad_cam")
    }
    assert all(f.status in ("pass", "warn", "fail") for f in findings)
    # Seed noise at the default budget keeps them out of the default policy (see trust.yaml).
    assert not [f for f in evaluate_policy(report, load_policy()) if f.check_id.startswith("explanation_")]


def test_sparseness_and_similarity_known_values():
    valid = np.ones((2, 4), dtype=bool)
    np.testing.assert_allclose(gini(np.array([[1.0, 1, 1, 1], [0, 0, 0, 5]]), valid), [0.0, 0.75])
    a = np.array([[1.0, 2, 3, 4], [1, 2, 3, 4]])
    np.testing.assert_allclose(spearman_abs(a, np.array([[2.0, 4, 6, 8], [4, 3, 2, 1]]), valid), [1.0, -1.0])


def test_bad_parameters_and_nothing_to_score_say_what_to_do(tabular_bundle):
    with pytest.raises(Exception, match="steps must be at least 1"):
        make_probe("explanation_trust", {"steps": 0})
    card = load_card(tabular_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, seed=0, sample_indices=np.arange(3))
    with pytest.raises(Exception, match="no attribution probe has that name"):
        make_probe("explanation_trust", {"methods": ["nope"]}).run(model, data, context)
    alone = make_probe("explanation_trust").run(model, data, context)
    assert alone.methods == ["integrated_gradients"] and "computed integrated_gradients itself" in alone.notes[0]
    # Two classes: the other class's map mirrors this one, so no random-logit check (it would always fail).
    assert "random_logit_similarity" not in alone.metrics["integrated_gradients"] and any("two classes" in n for n in alone.notes)


def test_deletion_curve_matches_explicit_inputs_and_black_pixels_cost_no_rows(image_bundle):
    card = load_card(image_bundle["card_path"])
    model = load_model(card)
    x = image_bundle["x"][:3].copy()
    x[:, :, :4, :] = 0.0  # the top half already black: deleting those pixels changes nothing
    maps = np.random.default_rng(3).normal(size=(3, 64))
    features = Features(index=np.arange(64), baseline=np.zeros(64), n=64, valid=np.ones((3, 64), dtype=bool))
    targets = np.array([1, 4, 7])
    calls, rows = model.meter.snapshot()
    got = faithfulness(model, x, targets, maps, features, steps=64, n_random=0, corr_runs=5, corr_fraction=0.25, rng=np.random.default_rng(0), insertion=False)
    spent = model.meter.snapshot()[1] - rows
    # At most the 32 non-black pixels + 1 distinct deletion rows and 5 subsets per sample, not 65 + 5.
    assert spent <= 3 * (33 + 5)
    for i in range(3):
        order = np.argsort(-maps[i], kind="stable")
        inputs = np.repeat(x[i : i + 1], 65, axis=0).reshape(65, -1)
        for c in range(65):
            inputs[c, order[:c]] = 0.0
        proba = model.predict_proba(inputs.reshape(65, 1, 8, 8))[:, targets[i]]
        np.testing.assert_allclose(got["deletion_curve"][i], proba, rtol=1e-5, atol=1e-6)


def test_cheap_maps_are_scored_on_more_samples_within_the_rerun_budget(image_bundle):
    card = load_card(image_bundle["card_path"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, seed=0, sample_indices=np.arange(4))
    wide = _trust(model, data, context, ["saliency"], n_samples=2, faithfulness_samples=12, noise_draws=1, cascade_stages=1)
    assert len(wide.metrics["saliency"]["deletion_gain"]) == 12  # 4 explained + 8 re-run
    assert len(wide.metrics["saliency"]["model_randomization_similarity"]) >= 2
    narrow = _trust(model, data, context, ["saliency"], n_samples=2, faithfulness_samples=12, max_rerun_rows=0, noise_draws=1, cascade_stages=1)
    assert len(narrow.metrics["saliency"]["deletion_gain"]) == 4 and len(narrow.metrics["saliency"]["model_randomization_similarity"]) == 2
    lo, hi = wide.interval("saliency", "faithfulness")
    assert lo <= wide.property_value("saliency", "faithfulness") <= hi


def test_text_faithfulness_removes_whole_words_not_word_pieces():
    card = resolve_card("toxicity-minilm")
    model, data = load_model(card, device="cpu"), load_data(card)
    text = data.texts[0]
    tok = model.tokenizer
    words = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(tok.backend_tokenizer.normalizer.normalize_str(text))
    pieces = int((~np.isin(data.x[0], tok.all_special_ids)).sum())
    assert len(words) < pieces, "the first text must have a word split into pieces"
    context = build_context(model, data, seed=0, sample_indices=np.array([0]))
    earlier = (make_probe("layer_integrated_gradients", {"n_steps": 4}).run(model, data, context),)
    params = {"n_samples": 1, "faithfulness_samples": 1, "max_rerun_rows": 0, "cascade_stages": 1, "steps": 4, "corr_runs": 8}
    result = make_probe("explanation_trust", params).run(model, data, dataclasses.replace(context, earlier=earlier))
    assert result.features.startswith(f"words (up to {len(words)} per text")
    values = result.metrics["layer_integrated_gradients"]
    assert np.isfinite(values["faithfulness_correlation"]).all() and np.isfinite(values["model_randomization_similarity"]).all()
