"""Text models end to end: the Hugging Face loader, text data, and every text probe on known answers.

Models are tiny: a random BertForSequenceClassification (hidden 32, 2 layers, 2 heads) with a
word-level tokenizer built offline, saved with save_pretrained and loaded through the real
loader; and bag-of-words modules whose answers are known by construction.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from audits.data import AuditData, load_data
from audits.engine import build_context, run_audit
from audits.errors import CardError, DataError, ModelLoadError, UnsafeModelError
from audits.explain._attention import rollout
from audits.explain.kernel_shap_text import KernelShapText
from audits.explain.layer_integrated_gradients import LayerIntegratedGradients
from audits.explain.lime_text import LimeText
from audits.explain.text_attention import TextAttention
from audits.fairness.identity_terms import IdentityTerms, fill, swap
from audits.lexicons import load_identity_lexicon
from audits.robustness._text import add_typos, drop_words, swap_synonyms
from audits.robustness.text_perturbations import TextRobustness
from audits.spec import AuditSpec
from models.card import parse_card
from models.loader import load_model, wrap_model
from models.registry import ZOO_DIR

from .text_fixtures import VOCAB, KeyedBag, WordWeights, make_tokenizer, save_model, text_card, tiny_bert

ID = {t: i for i, t in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizer")
    make_tokenizer().save_pretrained(str(folder))
    return folder


def bag_handle(net: torch.nn.Module, tokenizer_dir: Path, max_length: int = 24):
    """A handle for an in-memory text module (format/weights unused by wrap_model)."""
    card = parse_card(
        text_card("bag", format="torchscript", weights="unused.pt", input={"kind": "text", "max_length": max_length, "tokenizer": str(tokenizer_dir)}),
        base_dir=tokenizer_dir,
    )
    return wrap_model(net, card)


def text_data(model, texts: list[str], labels=None, groups=None) -> AuditData:
    n = len(texts)
    return AuditData(
        modality="text", x=model.tokenize(texts), y=np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels),
        class_names=["ok", "toxic"], attributes=pd.DataFrame({"group": groups if groups is not None else ["a"] * n}),
        sensitive=["group"], source="memory", sha256="", raw=pd.DataFrame({"text": texts}),
    )  # fmt: skip


# --- loading -----------------------------------------------------------------------------------


def test_huggingface_folder_loads_through_the_real_loader(text_bundle):
    card = parse_card(text_bundle["card"], base_dir=text_bundle["dir"])
    model, data = load_model(card), load_data(card)
    assert model.modality == "text" and model.input_shape == (24,)
    assert data.x.dtype == np.int64 and data.x.shape == (40, 24)
    assert data.texts[:2] == list(text_bundle["frame"]["text"][:2])
    assert list(data.attributes.columns) == ["group"]
    # The handle's logits equal the network's on the same ids with the padding mask.
    ids = torch.as_tensor(data.x[:5])
    with torch.no_grad():
        expected = text_bundle["net"](ids, (ids != 0).long()).logits.numpy()
    np.testing.assert_allclose(model.logits(data.x[:5]), expected, atol=1e-5)
    assert len(model.weights_sha256) == 64 and model.parameter_count == sum(p.numel() for p in text_bundle["net"].parameters())
    assert not model.network.training and not any(p.requires_grad for p in model.network.parameters())


def test_trimming_padding_and_length_batching_change_nothing(text_bundle):
    card = parse_card(text_bundle["card"], base_dir=text_bundle["dir"])
    model, data = load_model(card), load_data(card)
    one_by_one = np.concatenate([model.logits(data.x[i : i + 1]) for i in range(10)])
    np.testing.assert_allclose(model.logits(data.x[:10]), one_by_one, atol=1e-5)
    np.testing.assert_allclose(model.predict_proba(data.x[:10], batch_size=3), model.predict_proba(data.x[:10]), atol=1e-6)


def test_pickled_weights_are_refused_with_the_fix(text_bundle, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    net = text_bundle["net"]
    net.config.save_pretrained(str(folder))
    text_bundle["tokenizer"].save_pretrained(str(folder))
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    card = parse_card(text_card(weights=str(folder)), base_dir=tmp_path)
    with pytest.raises(UnsafeModelError) as err:
        load_model(card)
    assert "pytorch_model.bin" in err.value.problem and "safe_serialization=True" in err.value.fix


def test_card_rules_for_text(tmp_path):
    with pytest.raises(CardError, match="input.tokenizer"):
        parse_card(text_card(format="safetensors", weights="w.safetensors", architecture={"target": "m:C"}), base_dir=tmp_path)
    with pytest.raises(CardError, match="text models only"):
        parse_card({**text_card(), "modality": "image", "input": {"kind": "image", "channels": 1, "height": 2, "width": 2}}, base_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(parse_card(text_card(weights="missing"), base_dir=tmp_path))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.assign(text=[""] + list(f["text"][1:])), "empty or blank"),
        (lambda f: f.drop(columns=["text"]), "no text column"),
        (lambda f: f.assign(label=["maybe"] + list(f["label"][1:])), "not among the card's class_names"),
        (lambda f: f.drop(columns=["group"]), "sensitive column"),
        (lambda f: f.assign(group=[""] + list(f["group"][1:])), "missing value"),
    ],
)
def test_text_data_is_validated(text_bundle, edit, message):
    edit(text_bundle["frame"]).to_csv(text_bundle["dir"] / "eval.csv", index=False)
    card = parse_card(text_bundle["card"], base_dir=text_bundle["dir"])
    with pytest.raises(DataError, match=message):
        load_data(card)


def test_texts_like_na_stay_text(text_bundle):
    frame = text_bundle["frame"].assign(text=["NA"] + list(text_bundle["frame"]["text"][1:]))
    frame.to_csv(text_bundle["dir"] / "eval.csv", index=False)
    data = load_data(parse_card(text_bundle["card"], base_dir=text_bundle["dir"]))
    assert data.texts[0] == "NA"


# --- attention ---------------------------------------------------------------------------------


def forced_attention_bert(key: int):
    """A 2-layer BERT whose every query attends to the token ``key``: its embedding has a spike in
    dimension 0, keys read only that dimension, queries are constant, and the residual branches are
    zeroed so every layer sees the same normalized embeddings."""
    net = tiny_bert()
    with torch.no_grad():
        emb = net.bert.embeddings
        emb.word_embeddings.weight.normal_(0.0, 0.02)
        emb.position_embeddings.weight.zero_()
        emb.token_type_embeddings.weight.zero_()
        emb.word_embeddings.weight[key, 0] = 10.0
        for layer in net.bert.encoder.layer:
            att = layer.attention.self
            att.query.weight.zero_()
            att.query.bias.fill_(1.0)
            att.key.weight.zero_()
            att.key.weight[:, 0] = 1.0
            att.key.bias.zero_()
            layer.attention.output.dense.weight.zero_()
            layer.attention.output.dense.bias.zero_()
            layer.output.dense.weight.zero_()
            layer.output.dense.bias.zero_()
    return net


def test_forced_attention_shows_in_raw_maps_and_rollout(tmp_path):
    net = forced_attention_bert(ID["mat"])
    save_model(tmp_path / "model", net, make_tokenizer())
    pd.DataFrame({"text": ["the cat sat on the mat", "my friend says the mat is good"], "label": ["ok", "ok"], "group": ["a", "b"]}).to_csv(
        tmp_path / "eval.csv", index=False
    )
    card = parse_card(text_card(), base_dir=tmp_path)
    model, data = load_model(card), load_data(card)
    result = TextAttention(readout="cls").run(model, data, build_context(model, data, sample_indices=np.array([0, 1])))
    for i, tokens in enumerate(result.tokens):
        where = tokens.index("mat")
        n = len(tokens)
        raw = result.attention[i, :, :, :n, :n]  # (L, H, n, n)
        assert (raw.argmax(axis=-1) == where).all()  # every layer, head and query row
        assert raw[..., where].min() > 0.9
        assert result.rollout[i, :n, :n].argmax(axis=1)[0] == where
        assert int(np.argmax(result.attributions[i])) == where
        # Rollout rows sum to 1 and match the shared core on the cropped maps.
        np.testing.assert_allclose(result.rollout[i, :n, :n].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(result.rollout[i, :n, :n], rollout(result.attention[i][:, None, :, :n, :n])[0], atol=2e-3)
        assert result.attributions[i, n:].sum() == 0
    assert (result.quality["rollout_row_sum_error"] < 1e-5).all()
    assert model.network.config._attn_implementation == "sdpa"  # eager only while maps were read


def test_attention_needs_a_transformer(tokenizer_dir):
    model = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    data = text_data(model, ["you are an idiot"])
    assert "no Hugging Face transformer" in TextAttention().check(model, data)


# --- gradient and perturbation attributions ----------------------------------------------------


def test_layer_integrated_gradients_is_complete(text_bundle):
    card = parse_card(text_bundle["card"], base_dir=text_bundle["dir"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, sample_indices=np.arange(6))
    result = LayerIntegratedGradients(n_steps=64, output="logit").run(model, data, context)
    gap = np.abs(result.outputs - result.base_values)
    assert (result.quality["completeness_error"] <= 0.02 * gap + 1e-4).all(), (result.quality, gap)
    np.testing.assert_allclose(result.attributions.sum(axis=1), result.outputs - result.base_values, atol=0.02 * gap.max() + 1e-4)
    # CLS, SEP and padding are shared with the baseline, so they get nothing.
    specials = np.isin(data.x[:6], [0, 2, 3])
    assert np.abs(result.attributions[specials]).max() < 1e-6


def test_kernel_shap_text_is_exact_on_an_additive_model(tokenizer_dir):
    weights = torch.linspace(-1, 1, len(VOCAB))
    model = bag_handle(WordWeights(weights), tokenizer_dir)
    data = text_data(model, ["you are an idiot", "thanks for fixing the article", "the cat sat on the mat"])
    context = build_context(model, data, sample_indices=np.arange(3))
    result = KernelShapText(output="logit", target=1).run(model, data, context)
    assert result.quality["exact"] is True
    for i in range(3):
        ids = data.x[i][data.x[i] > 4]  # the words (every word is one token here)
        expected = weights[ids] - weights[ID["[MASK]"]]
        got = result.attributions[i][data.x[i] > 4]
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(result.base_values + result.attributions.sum(axis=1), result.outputs, atol=1e-5)


def test_kernel_shap_text_equals_brute_force_shapley_on_a_transformer(text_bundle):
    card = parse_card(text_bundle["card"], base_dir=text_bundle["dir"])
    model, data = load_model(card), load_data(card)
    row = 0  # "thanks for fixing the article": 5 words
    result = KernelShapText().run(model, data, build_context(model, data, sample_indices=np.array([row])))
    ids = data.x[row]
    words = np.flatnonzero(ids > 4)
    m = len(words)
    target = int(result.targets[0])

    def value(coalition) -> float:
        x = ids.copy()
        x[[w for k, w in enumerate(words) if k not in coalition]] = ID["[MASK]"]
        return float(model.predict_proba(x[None])[0, target])

    values = {s: value(s) for r in range(m + 1) for s in itertools.combinations(range(m), r)}
    for k in range(m):
        phi = sum(
            math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m) * (values[tuple(sorted((*s, k)))] - values[s])
            for s in values if k not in s
        )  # fmt: skip
        assert result.attributions[0, words[k]] == pytest.approx(phi, abs=1e-5)


def test_perturbation_probes_are_batched(text_bundle):
    card = parse_card(text_bundle["card"], base_dir=text_bundle["dir"])
    model, data = load_model(card), load_data(card)
    context = build_context(model, data, sample_indices=np.arange(8))
    players = (data.x[:8] > 4).sum(axis=1)
    # KernelSHAP enumerates every coalition (2^m with both ends) when that fits in n_samples, LIME draws 64.
    expected_rows = {KernelShapText: sum(2**m if 2**m - 2 <= 64 else 66 for m in players), LimeText: 8 * 64}
    for probe in (KernelShapText(n_samples=64, players="tokens"), LimeText(n_samples=64)):
        result = probe.run(model, data, context)
        assert result.cost.model_calls <= len(set(players))  # one batched evaluation per player count
        assert result.cost.rows_evaluated == expected_rows[type(probe)]
        again = type(probe)(**probe.params).run(model, data, context)
        np.testing.assert_array_equal(result.attributions, again.attributions)


def test_lime_text_agrees_with_lime(tokenizer_dir):
    lime_text = pytest.importorskip("lime.lime_text")
    torch.manual_seed(0)
    weights = torch.randn(len(VOCAB)) * 2
    model = bag_handle(WordWeights(weights), tokenizer_dir)
    texts = ["my muslim friend says this page is good", "you are a stupid fool and a loser"]
    data = text_data(model, texts)
    context = build_context(model, data, sample_indices=np.arange(2))
    ours = LimeText(n_samples=3000).run(model, data, context)
    proba = model.output_fn("probability")

    def classify(batch: list[str]) -> np.ndarray:
        with torch.no_grad():
            return proba(model.to_tensor(model.tokenize(batch))).numpy()

    explainer = lime_text.LimeTextExplainer(bow=False, mask_string="[MASK]", split_expression=r"\s+", random_state=0, feature_selection="none")
    for i, text in enumerate(texts):
        label = int(ours.targets[i])
        exp = explainer.explain_instance(text, classify, labels=(label,), num_features=20, num_samples=3000)
        theirs = dict(exp.local_exp[label])
        theirs = np.array([theirs[k] for k in range(len(text.split()))])
        mine = ours.attributions[i][data.x[i] > 4]
        assert np.corrcoef(mine, theirs)[0, 1] > 0.95
        assert ours.quality["r2"][i] == pytest.approx(exp.score, abs=0.05)


# --- robustness --------------------------------------------------------------------------------


def test_text_edits_are_seeded_and_do_what_they_say():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    text = "You are an idiot, thanks for nothing."
    assert add_typos(text, 1.0, rng()) == add_typos(text, 1.0, rng()) != text
    assert add_typos(text, 0.0, rng()) == text
    dropped = drop_words(text, 0.5, rng())
    assert len(dropped.split()) < len(text.split()) and dropped.endswith(".")
    assert swap_synonyms(text, 1.0, rng(), {"idiot": ["fool"]}) == "You are an fool, thanks for nothing."
    assert swap_synonyms("Idiot!", 1.0, rng(), {"idiot": ["fool"]}) == "Fool!"


def test_text_robustness_known_answers(tokenizer_dir):
    texts = ["you are an idiot"] * 6 + ["thanks for fixing the article"] * 6
    keyed = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    data = text_data(keyed, texts, labels=[1] * 6 + [0] * 6, groups=["a"] * 6 + ["b"] * 6)
    context = build_context(keyed, data, sample_indices=np.arange(2))
    result = TextRobustness(perturbations=["typos", "synonyms"], severities=[1.0], max_rows=None).run(keyed, data, context)
    table = result.table.set_index("perturbation")
    # Every word gets a typo: each 'idiot' text flips, the others cannot; 'idiot' -> a synonym flips too.
    assert table.loc["typos", "flip_rate"] == pytest.approx(0.5) and table.loc["typos", "accuracy"] == pytest.approx(0.5)
    assert table.loc["synonyms", "flip_rate"] == pytest.approx(0.5)
    by = result.by_group[result.by_group["perturbation"] == "typos"].set_index("group")
    assert by.loc["a", "flip_rate"] == 1.0 and by.loc["b", "flip_rate"] == 0.0
    assert result.examples["flipped"].any()
    # A model that reads nothing never flips.
    constant = bag_handle(KeyedBag([ID["[MASK]"]]), tokenizer_dir)
    result = TextRobustness(max_rows=None).run(constant, data, build_context(constant, data))
    assert (result.table["flip_rate"] == 0).all()


# --- identity terms ----------------------------------------------------------------------------


def test_templates_and_swaps_read_naturally():
    lexicon = load_identity_lexicon()
    assert fill("I am a {adjective} person.", "asian") == "I am an asian person."
    assert fill("{Adjective} people live here.", "muslim") == "Muslim people live here."
    religion = lexicon.category("religion")
    assert swap("A Muslim went to the MOSQUE.", religion, "christian") == "A Christian went to the CHURCH."
    assert swap("a muslim friend", religion, "atheist") == "an atheist friend"
    assert swap("my muslim friend at the mosque", religion, "atheist") is None  # no atheist counterpart of 'mosque'


def test_identity_flip_rate_is_zero_when_the_model_ignores_identity(tokenizer_dir):
    model = bag_handle(KeyedBag([ID["idiot"]]), tokenizer_dir)
    data = text_data(model, ["my muslim friend says you are an idiot", "my christian friend says thanks", "the cat sat on the mat"])
    result = IdentityTerms(categories=["religion", "gender"]).run(model, data, build_context(model, data))
    assert set(result.groups["source"]) == {"templates", "evaluation"}
    assert (result.groups["flip_rate"] == 0).all() and np.allclose(result.groups["mean_shift"], 0)
    assert (result.pairs["flips"] == 0).all()


def test_identity_flip_rate_finds_the_term_a_model_is_keyed_on(tokenizer_dir):
    model = bag_handle(KeyedBag([ID["muslim"]]), tokenizer_dir)
    data = text_data(model, ["my muslim friend says thanks", "my christian friend says thanks", "the cat sat on the mat"])
    result = IdentityTerms(categories=["religion", "gender"]).run(model, data, build_context(model, data))
    groups = result.groups.set_index(["source", "category", "group"]).sort_index()
    assert result.flip_rate("muslim") > 0 and groups.loc[("templates", "religion", "muslim"), "mean_shift"] > 0.5
    # Templates: every text swapped into 'muslim' flips; into another group only the ones that came from 'muslim'.
    assert groups.loc[("templates", "religion", "muslim"), "flip_rate"] == 1.0
    assert groups.loc[("templates", "religion", "christian"), "flip_rate"] == pytest.approx(1 / 6)
    assert (groups.loc[("templates", "gender"), "flip_rate"] == 0).all()
    # Evaluation texts: the 'christian' text swapped into 'muslim' flips; the 'muslim' one flips away.
    assert groups.loc[("evaluation", "religion", "muslim"), "flip_rate"] == 1.0
    assert result.examples.iloc[0]["flipped"]
    assert "up most into religion/muslim" in result.headline()


# --- the demo model ----------------------------------------------------------------------------


@pytest.mark.skipif(not (ZOO_DIR / "toxicity-minilm" / "card.yaml").is_file(), reason="the text demo model is not built")
def test_demo_model_reproduces_its_card_and_finds_the_planted_bias():
    from models.registry import resolve_card

    card = resolve_card("toxicity-minilm")
    model, data = load_model(card), load_data(card)
    assert model.parameter_count > 22_000_000  # the whole MiniLM encoder, not only the head
    assert model.weights_sha256 != card.notes["base_model_sha256"]
    spec = AuditSpec(
        probes=[
            {"name": "identity_terms", "params": {"sources": ["templates"], "categories": ["religion", "sexual_orientation"]}},
            {"name": "group_metrics", "params": {"n_boot": 0, "min_group_size": 10}},
        ]
    )
    report = run_audit(model, data, spec)
    assert report.performance.accuracy == pytest.approx(card.notes["eval_accuracy"], abs=0.005)
    # The card declares "non-toxic" favourable: naming a planted group lowers P(non-toxic) the most.
    assert report.fairness[0].score_class == "non-toxic"
    shifts = report.fairness[0].groups.set_index(["category", "group"])["mean_shift"]
    assert shifts.loc[("religion", "muslim")] == shifts.loc["religion"].min() < 0
    assert shifts.loc[("sexual_orientation", "gay")] == shifts.loc["sexual_orientation"].min() < 0
    # The four-fifths rule reads the right way round: the planted groups are kept up least often.
    groups = report.fairness[1]
    assert groups.positive_class == "non-toxic" and groups.favourable_declared
    assert groups.four_fifths.iloc[0]["lowest_group"] in {"religion", "sexual_orientation"}
    assert report.data_summary.favourable_class == "non-toxic"
