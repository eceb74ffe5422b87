"""The chain MRF of Eqs. 10-12: Viterbi is exact (in NumPy and in-graph alike), and beta behaves as stated."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from vcaption.retrieval import mrf


@pytest.mark.parametrize("seed", range(12))
def test_viterbi_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    words, regions = int(rng.integers(1, 7)), int(rng.integers(1, 5))
    unary = rng.normal(size=(words, regions))
    beta = float(rng.choice([0.0, 0.3, 1.0, 2.5]))
    got, value = mrf.viterbi(unary, beta)
    want, best = mrf.brute_force(unary, beta)
    assert value == pytest.approx(best)
    assert mrf.energy(unary, got, beta) == pytest.approx(best)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_tf_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    unary = rng.normal(size=(int(rng.integers(1, 8)), int(rng.integers(1, 5)))).astype(np.float32)
    beta = float(rng.choice([0.0, 0.5, 2.0, 50.0]))
    want, _ = mrf.viterbi(unary, beta)
    np.testing.assert_array_equal(mrf.viterbi_tf(tf.constant(unary), tf.constant(beta)).numpy(), want)


def test_beta_zero_is_the_word_wise_argmax():
    unary = np.random.default_rng(0).normal(size=(9, 4))
    assignment, _ = mrf.viterbi(unary, 0.0)
    np.testing.assert_array_equal(assignment, np.argmax(unary, axis=1))
    assert len(set(assignment.tolist())) > 1  # the instance is not trivial


def test_large_beta_gives_one_region_the_best_in_total():
    unary = np.random.default_rng(1).normal(size=(9, 4))
    assignment, _ = mrf.viterbi(unary, beta=100.0)
    assert set(assignment.tolist()) == {int(np.argmax(unary.sum(axis=0)))}


def test_snippets_and_visual_genome_regions():
    tokens = "a red circle above a blue square".split()
    assignment = [0, 1, 1, 0, 0, 2, 2]
    unary = np.arange(21, dtype=float).reshape(7, 3)
    pieces = mrf.snippets(assignment, tokens, unary)
    assert [p["text"] for p in pieces] == ["a", "red circle", "above a", "blue square"]
    assert pieces[1]["score"] == pytest.approx((unary[1, 1] + unary[2, 1]) / 2)
    boxes = np.array([[0, 0, 1, 1], [0.1, 0.2, 0.3, 0.5], [0.5, 0.5, 1.0, 0.75]])
    vg = mrf.visual_genome_regions("7", boxes, (128, 128), pieces)
    assert vg["id"] == 7
    assert vg["regions"][1] == {"region_id": 1, "image_id": 7, "x": 26, "y": 13, "width": 38,
                                "height": 26, "phrase": "red circle"}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="beta"):
        mrf.viterbi(np.zeros((2, 2)), -1.0)
    with pytest.raises(ValueError, match="regions"):
        mrf.viterbi(np.zeros((2, 0)), 1.0)
