"""The Robustness page for a text model: the word-substitution attack as the user sees it (AppTest)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from models.registry import zoo_names  # noqa: E402
from tests.dashboard_support import store_audit  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TIMEOUT = 120


@pytest.mark.skipif("toxicity-minilm" not in zoo_names(), reason="the text model is not in the zoo")
def test_robustness_page_shows_the_word_substitution_attack_on_a_text_model(tmp_path, monkeypatch):
    from audits.lexicons import load_identity_lexicon
    from audits.report import AuditReport

    monkeypatch.setenv("AUDITS_STORE", str(tmp_path))
    spec = {"seed": 0, "samples": 2, "max_rows": 64, "probes": [{"name": "word_substitution", "params": {"max_rows": 32}}]}
    result = AuditReport.load(store_audit("toxicity-minilm", spec).path).robustness[0]
    assert result.method == "word_substitution" and result.success.any()  # some decisions flipped: words to show
    identity = {t for c in load_identity_lexicon(None).categories for terms in c.groups.values() for t in terms if t is not None}
    assert not (set(result.words["original"]) | set(result.words["substitute"])) & identity  # identity terms never swapped

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if at.sidebar.selectbox[0].value != "toxicity-minilm":
        at.sidebar.selectbox[0].set_value("toxicity-minilm").run()
    at.switch_page("app_pages/robustness_page.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert "Word-substitution attack (synonyms)" in [s.value for s in at.subheader]
    # The headline: the success rate and the accuracy before and after, as the stored result has them
    # (the page escapes Markdown in it: '->' is written '-\\>' and renders as '->').
    rendered = [m.value.replace("\\", "") for m in at.markdown]
    headline = (
        f"{result.attack_success_rate:.1%} of correct decisions flipped by at most {result.budget} synonym swaps "
        f"(accuracy {result.clean_accuracy:.3f} -> {result.attacked_accuracy:.3f})"
    )
    assert any(headline in text for text in rendered), rendered
    # The words the attack used, each swap with its count.
    shown = [d.value for d in at.dataframe if {"original", "substitute", "uses"} <= set(d.value.columns)]
    assert len(shown) == 1
    pairs = sorted(zip(shown[0]["original"], shown[0]["substitute"], shown[0]["uses"], strict=True))
    assert pairs == sorted(zip(result.words["original"], result.words["substitute"], result.words["uses"], strict=True)) and pairs
