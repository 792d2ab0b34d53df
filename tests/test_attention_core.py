"""Attention rollout and head averaging against manual computations."""

from __future__ import annotations

import numpy as np

from audits.explain._attention import head_average, rollout


def _random_attention(rng, layers=3, batch=2, heads=4, tokens=5):
    logits = rng.normal(size=(layers, batch, heads, tokens, tokens))
    a = np.exp(logits)
    return a / a.sum(axis=-1, keepdims=True)


def test_rollout_rows_sum_to_one_and_match_a_manual_product():
    rng = np.random.default_rng(0)
    att = _random_attention(rng)
    joint = rollout(att)
    np.testing.assert_allclose(joint.sum(axis=-1), 1.0, atol=1e-12)
    eye = np.eye(5)
    manual = eye
    for layer in att.mean(axis=2)[:, 0]:
        manual = (0.5 * layer + 0.5 * eye) @ manual
    np.testing.assert_allclose(joint[0], manual, atol=1e-12)
    np.testing.assert_allclose(head_average(att)[1, 1], att[1, 1].mean(axis=0))


def test_attention_forced_onto_one_token_shows_in_rollout():
    att = np.zeros((2, 1, 2, 4, 4))
    att[..., 2] = 1.0  # every query attends only to token 2
    joint = rollout(att, residual=False)
    np.testing.assert_allclose(joint[0, :, 2], 1.0)
    with_residual = rollout(att)
    assert (with_residual[0].argmax(axis=-1)[[0, 1, 3]] == 2).all()
