"""Concept tests (TCAV) and feature visualization against known answers: planted concepts, random concepts, linear models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from audits.data import load_data
from audits.engine import run_audit
from audits.policy import apply_policy
from audits.results import TCAVResult
from audits.spec import parse_spec
from models.architectures import DigitsCNN
from models.card import load_card
from models.loader import load_model
from tests.conftest import write_card

PATTERN_CLASS = 7


def _train(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float = 0.01) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = torch.tensor(np.array(x)), torch.tensor(np.array(y), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()


def _stamp(x: np.ndarray) -> np.ndarray:
    """The planted pattern: a bright 2x2 square in the bottom-right corner (where no digit has ink)."""
    x = x.copy()
    x[:, :, 6:8, 6:8] = 1.0
    return x


def planted_digits(folder: Path, plant: bool = True) -> Path:
    """A DigitsCNN trained on digits where the pattern co-occurs with 7s (on 90% of them, on no other digit).

    The evaluation rows carry the pattern on a random 30% of rows of every class (attribute
    ``pattern=yes``) and a coin flip unrelated to anything (attribute ``coin``).
    """
    from sklearn.datasets import load_digits

    folder.mkdir()
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target
    rng = np.random.default_rng(0)
    train = np.arange(len(y)) < 1200
    xtr, ytr = x[train], y[train]
    marked = (ytr == PATTERN_CLASS) & (rng.random(len(ytr)) < 0.9) & plant
    xtr = np.where(marked[:, None, None, None], _stamp(xtr), xtr)
    torch.manual_seed(0)  # the initial weights too: the test must not depend on what ran before it
    net = DigitsCNN(in_channels=1, n_classes=10, width=8)
    _train(net, (xtr - 0.5) / 0.25, ytr, epochs=12)
    save_file(net.state_dict(), str(folder / "weights.safetensors"))
    xte, yte = x[~train], y[~train]
    pattern = rng.random(len(yte)) < 0.3
    xte = np.where(pattern[:, None, None, None], _stamp(xte), xte)
    np.savez(folder / "eval.npz", x=xte, y=yte)
    pd.DataFrame({"pattern": np.where(pattern, "yes", "no"), "coin": rng.choice(["heads", "tails"], len(yte))}).to_csv(folder / "attrs.csv", index=False)
    card = {
        "name": "planted-concept-cnn",
        "modality": "image",
        "format": "safetensors",
        "weights": "weights.safetensors",
        "architecture": {"target": "models.architectures:DigitsCNN", "kwargs": {"in_channels": 1, "n_classes": 10, "width": 8}},
        "class_names": [str(i) for i in range(10)],
        "input": {"kind": "image", "channels": 1, "height": 8, "width": 8, "value_range": [0.0, 1.0], "normalization": {"mean": [0.5], "std": [0.25]}},
        "data": {"path": "eval.npz", "label_column": "y", "attributes_path": "attrs.csv", "sensitive": ["pattern", "coin"]},
    }
    return write_card(folder, card)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return planted_digits(tmp_path_factory.mktemp("concepts") / "planted")


def _audit(card_path: Path, probes: list[dict], seed: int = 0):
    card = load_card(card_path)
    spec = parse_spec({"seed": seed, "samples": 8, "probes": probes})
    return apply_policy(run_audit(load_model(card, device="cpu"), load_data(card), spec))


def _tcav(report) -> TCAVResult:
    assert not report.failures, report.failures
    (r,) = [r for r in report.concepts if isinstance(r, TCAVResult)]
    return r


CONCEPTS = {"name": "tcav", "params": {"concepts": ["pattern=yes", "coin=heads", "coin=tails"]}}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The same network and data, trained without the pattern."""
    return planted_digits(tmp_path_factory.mktemp("concepts") / "clean", plant=False)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_pattern_raises_its_class_only_and_random_concepts_nothing(planted, seed):
    r = _tcav(_audit(planted, [CONCEPTS], seed=seed))
    assert r.concepts == ["pattern=yes", "coin=heads", "coin=tails"]
    means, sig = r.mean_scores(), np.asarray(r.significant)
    # Moving the layer's activation towards the pattern raises the planted class's logit on every one of its rows,
    # significantly against random concepts; it significantly raises no other class (it lowers several).
    assert sig[0, PATTERN_CLASS] and means[0, PATTERN_CLASS] >= 0.95
    assert np.flatnonzero(r.raises()[0]).tolist() == [PATTERN_CLASS]
    assert r.cav_accuracy[0].mean() > 0.95  # the layer separates the pattern perfectly
    # A coin flip per row is no concept: its CAVs are no better than chance and it is significant for no class.
    assert not sig[1:].any()
    assert r.cav_accuracy[1:].mean() < 0.6


def test_without_the_plant_the_pattern_raises_no_class(clean):
    r = _tcav(_audit(clean, [CONCEPTS]))
    assert not r.raises().any()
    assert not r.significant[0, PATTERN_CLASS] and r.mean_scores()[0, PATTERN_CLASS] < 0.5


def test_policy_warns_on_a_significant_sensitive_concept_only(planted):
    report = _audit(planted, [CONCEPTS])
    findings = {f.subject: f for f in report.findings if f.check_id == "tcav_sensitive_concepts"}
    # One finding per sensitive concept, on its most affected class.
    assert set(findings) == {"concept=pattern=yes", "concept=coin=heads", "concept=coin=tails"}
    assert findings["concept=pattern=yes"].status == "warn" and findings["concept=pattern=yes"].measured > 0.2
    assert findings["concept=coin=heads"].status == findings["concept=coin=tails"].status == "pass"


def test_concept_from_a_file_of_examples_matches_the_attribute_concept(planted, tmp_path):
    card = load_card(planted)
    data = load_data(card)
    stamped = data.x[data.attributes["pattern"].to_numpy() == "yes"]
    np.save(tmp_path / "pattern.npy", stamped)
    r = _tcav(_audit(planted, [{"name": "tcav", "params": {"concepts": [str(tmp_path / "pattern.npy")]}}]))
    assert r.concepts == ["pattern"] and r.concept_sources == [str(tmp_path / "pattern.npy")] and r.sensitive == [False]
    assert r.significant[0, PATTERN_CLASS] and r.mean_scores()[0, PATTERN_CLASS] >= 0.95


def test_bad_concepts_and_budgets_are_refused_clearly(planted):
    report = _audit(planted, [{"name": "tcav", "params": {"concepts": ["no_such_column=1"]}}])
    (failure,) = report.failures
    assert "no_such_column=1" in failure.error and "column=value" in failure.fix
    from audits.errors import SpecError

    with pytest.raises(SpecError, match="n_runs"):
        parse_spec({"probes": [{"name": "tcav", "params": {"n_runs": 1}}]})


def test_tcav_scores_match_captums_tcav_on_the_same_cav(planted, tmp_path):
    """captum's TCAV (layer gradients, sign count) with our CAV as its classifier gives our scores exactly."""
    from captum.concept import TCAV, Concept
    from captum.concept._utils.classifier import Classifier

    from audits.explain._layers import activations_and_gradients
    from audits.explain.tcav import _scores, _train_cav

    card = load_card(planted)
    model, data = load_model(card, device="cpu"), load_data(card)
    pattern = np.flatnonzero(data.attributes["pattern"].to_numpy() == "yes")[:40]
    others = np.flatnonzero(data.attributes["pattern"].to_numpy() == "no")[:40]
    layer = model.network.get_submodule("features.2")
    acts, _ = activations_and_gradients(model, "features.2", layer, data.x[np.r_[pattern, others]], np.zeros(80, np.int64))
    cav, _ = _train_cav(acts[:40], acts[40:], np.random.default_rng(0))

    class OurCAV(Classifier):
        def __init__(self) -> None:
            self._w = torch.zeros(0)

        def train_and_eval(self, dataloader):
            x, y = (torch.cat(t) for t in zip(*dataloader, strict=True))
            x = x.reshape(len(x), -1).numpy()
            w, _ = _train_cav(x[y.numpy() == 0], x[y.numpy() == 1], np.random.default_rng(0))
            self._w = torch.tensor(np.stack([w, -w]), dtype=torch.float32)
            return {"accs": torch.tensor(1.0)}

        def weights(self):
            return self._w

        def classes(self):
            return [0, 1]

    def batches(rows):
        return iter([torch.as_tensor(data.x[rows])])

    concept, random = Concept(0, "pattern", batches(pattern)), Concept(1, "random", batches(others))
    tcav = TCAV(model.model, ["net.features.2"], classifier=OurCAV(), save_path=str(tmp_path / "cav"))
    ours, theirs = [], []
    for k in range(10):
        rows = np.flatnonzero(data.y == k)[:30]
        _, grads = activations_and_gradients(model, "features.2", layer, data.x[rows], np.full(len(rows), k))
        ours.append(_scores(grads, cav[None, None])[0, 0])
        with torch.inference_mode(False), torch.enable_grad():
            got = tcav.interpret(torch.as_tensor(data.x[rows]).requires_grad_(True), [[concept, random]], target=k)
        theirs.append(float(got["0-1"]["net.features.2"]["sign_count"][0]))
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    assert ours[PATTERN_CLASS] >= 0.95
    assert len(set(np.round(ours, 3))) > 3  # scores between 0 and 1 too: not a degenerate comparison


# ---------------------------------------------------------------- feature visualization


def _linear_image_model(weights: np.ndarray, images: np.ndarray):
    """A linear model on 1 x H x W images: logit_k = w_k . x (no bias), with its handle and data."""
    from audits.data import AuditData
    from models.card import parse_card
    from models.loader import wrap_model

    k, h, w = weights.shape
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(h * w, k, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.as_tensor(weights.reshape(k, -1)))
    card = parse_card(
        {"name": "linear", "modality": "image", "format": "torchscript", "weights": "none.pt", "class_names": [str(i) for i in range(k)],
         "input": {"kind": "image", "channels": 1, "height": h, "width": w, "value_range": [0.0, 1.0]}},
        base_dir=Path("."),
    )  # fmt: skip
    n = len(images)
    data = AuditData(
        modality="image", x=images.astype(np.float32), y=np.arange(n) % k, class_names=card.class_names,
        attributes=pd.DataFrame(index=range(n)), sensitive=[], source="test", sha256="",
    )  # fmt: skip
    return wrap_model(net, card, device="cpu"), data


def test_activation_maximisation_of_a_linear_model_converges_to_the_sign_pattern_of_its_weights():
    from audits.engine import build_context
    from audits.probes import make_probe

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 8, 8)).astype(np.float32)
    model, data = _linear_image_model(weights, rng.random((30, 1, 8, 8)))
    budget = {"steps": 200, "learning_rate": 0.1, "jitter": 0, "blur": 0.0, "n_channels": 0}
    probe = make_probe("feature_visualization", {**budget, "parameterization": "pixel"})
    r = probe.run(model, data, build_context(model, data, seed=0))
    images = r.class_images[:, 0]
    # max w.x over the box [0, 1]^64 is x = 1 where w > 0 and 0 where w < 0.
    np.testing.assert_array_equal(images > 0.5, weights > 0)
    assert np.abs(images - (weights > 0)).max() < 0.01
    optimum = np.clip(weights, 0, None).reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(r.class_logits, optimum, rtol=0.01)
    # The decorrelated (Fourier) parameterisation preconditions towards smooth images: at the same budget it gets
    # close, not exact (a pixel whose sign differs from its neighbours' can saturate on the wrong side first).
    fourier = make_probe("feature_visualization", {**budget, "parameterization": "fourier"}).run(model, data, build_context(model, data, seed=0))
    assert ((fourier.class_images[:, 0] > 0.5) == (weights > 0)).mean() > 0.9
    assert (fourier.class_logits > 0.95 * optimum).all()
    # The top evaluation images are the rows with the highest class logit.
    logits = data.x.reshape(30, -1) @ weights.reshape(3, -1).T
    for k in range(3):
        assert set(r.top_class_rows[k]) == set(np.argsort(-logits[:, k])[: probe.top_k])


def test_feature_visualization_of_the_planted_class_shows_the_pattern(planted, clean):
    r = _audit(planted, [{"name": "feature_visualization"}]).concepts[0]
    # Every top evaluation image of the planted class carries the pattern (30% of the rows do).
    attrs = load_data(load_card(planted)).attributes
    assert (attrs["pattern"].to_numpy()[r.top_class_rows[PATTERN_CLASS]] == "yes").all()
    assert r.class_probability[PATTERN_CLASS] > 0.99
    assert len(r.channels) == 4 and r.channel_images.shape == (4, 1, 8, 8) and (r.channel_activation >= r.top_channel_values[:, 0] * 0.9).all()
    # Control: trained without the pattern, the top 7s are not the stamped ones.
    control = _audit(clean, [{"name": "feature_visualization"}]).concepts[0]
    assert (attrs["pattern"].to_numpy()[control.top_class_rows[PATTERN_CLASS]] == "yes").mean() < 0.5


# ---------------------------------------------------------------- what the reader sees


def test_pdf_and_html_show_both_results_with_what_they_mean_and_do_not():
    from tests.report_fixtures import rendered_html, rendered_pdf
    from tests.test_report_pdf import pdf_text

    _, pages = pdf_text(rendered_pdf("digits-cnn"))
    text = " ".join(" ".join(pages).split())
    html = " ".join(rendered_html("digits-cnn").split())
    for doc in (text, html):
        assert "Concepts and features" in doc and "Concept tests (TCAV)" in doc and "Feature visualization" in doc
        assert doc.count("What this means") >= 2 and doc.count("What it does not mean") >= 2
        # The heatmap's and the gallery's captions (the charts themselves are images in the PDF).
        assert "CAVs each against fresh random rows" in doc and "optimisation steps per image" in doc
    assert "TCAV score at features.2" in html and "Class images: optimised, then the top evaluation images" in html


# --- text TCAV --------------------------------------------------------------------------------


class _ConceptText(torch.nn.Module):
    """Token embeddings -> ``block`` (identity) -> mean over the text's tokens -> a known head.

    The word 'muslim' alone has a first embedding coordinate (3, and 0 elsewhere). The 'toxic' logit is
    3 p0 + p1^2 - p2^2 on the pooled state p: its gradient has first coordinate 3 on every text,
    so moving the state towards the 'muslim' concept raises 'toxic' for every text. The 'ok' logit is
    0: that class does not read the layer, so no concept can move it.
    """

    def __init__(self, vocab: list[str], dim: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        weights = torch.randn(len(vocab), dim, generator=g) * 0.5
        weights -= weights.mean(dim=0)  # no direction shared by all words
        weights[:, 0] = 0.0
        weights[vocab.index("muslim")] = 0.0
        weights[vocab.index("muslim"), 0] = 3.0
        self.embed = torch.nn.Embedding.from_pretrained(weights)
        self.block = torch.nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).unsqueeze(-1).float()
        states = self.block(self.embed(input_ids))
        p = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        rest = p[:, 1] ** 2 - p[:, 2] ** 2
        return torch.stack([torch.zeros_like(rest), 3 * p[:, 0] + rest], dim=1)


def _text_handle(net: torch.nn.Module, folder: Path):
    from models.card import parse_card
    from models.loader import wrap_model
    from tests.text_fixtures import make_tokenizer, text_card

    make_tokenizer().save_pretrained(str(folder))
    card = text_card("concept-text", format="torchscript", weights="unused.pt", input={"kind": "text", "max_length": 16, "tokenizer": str(folder)})
    return wrap_model(net, parse_card(card, base_dir=folder))


def _text_data(model, n: int = 240):
    from audits.data import AuditData
    from tests.text_fixtures import WORDS

    rng = np.random.default_rng(0)
    plain = [w for w in WORDS if w != "muslim"]
    group = np.where(rng.random(n) < 0.3, "muslim", "other")
    texts = []
    for g in group:
        words = list(rng.choice(plain, size=int(rng.integers(3, 9))))
        if g == "muslim":
            words.insert(int(rng.integers(0, len(words) + 1)), "muslim")
        texts.append(" ".join(words))
    return AuditData(
        modality="text", x=model.tokenize(texts), y=rng.integers(0, 2, n), class_names=["ok", "toxic"],
        attributes=pd.DataFrame({"identity": group, "coin": rng.choice(["heads", "tails"], n)}),
        sensitive=["identity"], source="memory", sha256="", raw=pd.DataFrame({"text": texts}),
    )  # fmt: skip


def test_text_identity_concept_raises_the_class_it_feeds_and_random_concepts_nothing(tmp_path):
    from audits.engine import build_context
    from audits.probes import make_probe

    model = _text_handle(_ConceptText(__import__("tests.text_fixtures", fromlist=["VOCAB"]).VOCAB), tmp_path)
    data = _text_data(model)
    probe = make_probe("tcav", {"concepts": ["identity=muslim", "coin=heads"], "layer": "block"})
    result = probe.run(model, data, build_context(model, data))
    at = {name: i for i, name in enumerate(result.concepts)}
    ok, toxic = result.class_names.index("ok"), result.class_names.index("toxic")
    muslim = at["identity=muslim"]
    assert result.scores[muslim, toxic].mean() > 0.95  # every toxic-scored text's logit rises along the concept
    assert result.significant[muslim, toxic]
    assert not result.significant[muslim, ok] and (result.scores[:, ok] == 0).all()
    assert not result.significant[at["coin=heads"]].any()  # a coin flip is no direction in the layer


def test_text_tcav_reads_the_last_transformer_block_by_default_and_runs_in_the_default_audit(tmp_path):
    from audits.engine import run_audit
    from audits.explain._layers import concept_layer
    from audits.spec import AuditSpec
    from models.card import parse_card
    from models.loader import wrap_model
    from tests.text_fixtures import make_tokenizer, text_card, tiny_bert

    make_tokenizer().save_pretrained(str(tmp_path))
    card = text_card("tiny-bert", format="torchscript", weights="unused.pt", input={"kind": "text", "max_length": 16, "tokenizer": str(tmp_path)})
    model = wrap_model(tiny_bert(layers=2), parse_card(card, base_dir=tmp_path))
    assert concept_layer(model)[0].endswith("encoder.layer.1")
    data = _text_data(model, n=120)
    report = run_audit(model, data, AuditSpec(probes=[{"name": "tcav", "params": {"concepts": ["coin"], "n_runs": 10}}]))
    (result,) = [r for r in report.concepts if isinstance(r, TCAVResult)]
    assert result.layer.endswith("encoder.layer.1") and result.concepts == ["coin=heads", "coin=tails"]
    assert not result.significant.any()  # random coin flips: no concept
    assert "tcav" in __import__("audits.probes", fromlist=["default_probe_names"]).default_probe_names("text", model, data)


def test_toxicity_minilm_random_concepts_are_not_significant_at_its_last_block():
    import dataclasses

    from audits.engine import build_context
    from audits.probes import make_probe
    from models.registry import ZOO_DIR

    path = ZOO_DIR / "toxicity-minilm" / "card.yaml"
    if not path.is_file():
        pytest.skip("the text demo model is not built")
    card = load_card(path)
    model, data = load_model(card), load_data(card)
    rng = np.random.default_rng(0)
    data = dataclasses.replace(data, attributes=data.attributes.assign(coin=rng.choice(["heads", "tails"], len(data))))
    result = make_probe("tcav", {"concepts": ["coin", "identity_category=religion"], "max_rows": 240}).run(model, data, build_context(model, data))
    assert result.layer == "encoder.encoder.layer.5"  # the encoder's last block
    coin = [i for i, c in enumerate(result.concepts) if c.startswith("coin=")]
    assert len(coin) == 2 and not result.significant[coin].any()
    religion = result.concepts.index("identity_category=religion")
    assert result.cav_accuracy[religion].mean() > 0.8  # the block separates religious-identity texts from random ones


def test_text_concept_from_a_txt_file_of_examples_is_found_like_the_attribute_concept(tmp_path):
    from audits.engine import build_context
    from audits.probes import make_probe
    from tests.text_fixtures import VOCAB

    model = _text_handle(_ConceptText(VOCAB), tmp_path)
    data = _text_data(model)
    texts = data.raw["text"][data.attributes["identity"] == "muslim"].tolist()
    (tmp_path / "muslim.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    result = make_probe("tcav", {"concepts": [str(tmp_path / "muslim.txt")], "layer": "block"}).run(model, data, build_context(model, data))
    assert result.concepts == ["muslim"] and result.n_examples == [len(texts)]  # blank lines are not examples
    assert result.significant[0, result.class_names.index("toxic")] and result.scores[0, 1].mean() > 0.95
def test_feature_visualization_adam_steps_exactly_like_torch_optim_adam():
    """The probe's own Adam (no torch.optim: constructing one imports torch._dynamo, seconds) gives
    torch.optim.Adam's iterates bit for bit on the CPU."""
    from audits.explain.feature_visualization import Adam

    torch.manual_seed(0)
    ours = torch.randn(3, 1, 8, 8).requires_grad_(True)
    theirs = ours.detach().clone().requires_grad_(True)
    w = torch.randn(3, 1, 8, 8)
    opts = ((ours, Adam([ours], lr=0.05)), (theirs, torch.optim.Adam([theirs], lr=0.05)))
    for _ in range(64):
        for p, opt in opts:
            opt.zero_grad()
            (torch.sin(p * w) * p).sum().backward()
            opt.step()
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, w)  # it moved
