"""Retrieval by caption likelihood: log P(S | I) for every pair, and its normalisation by log P(S)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from vcaption.captioning.lrcn import LRCNCaptioner
from vcaption.captioning.mrnn import KarpathyMultimodalRNN, MaoMultimodalRNN
from vcaption.metrics import retrieval
from vcaption.retrieval import likelihood

VOCAB = 12
FEATURES = 6
CAPTIONERS = {
    "lrcn_2f": lambda: LRCNCaptioner(VOCAB, variant="2f", hidden_units=8, embedding_dim=8,
                                     image_embedding_dim=8, feature_dim=FEATURES, dropout=0.0),
    "lrcn_1u": lambda: LRCNCaptioner(VOCAB, variant="1u", hidden_units=8, embedding_dim=8,
                                     image_embedding_dim=8, feature_dim=FEATURES, dropout=0.0),
    "karpathy": lambda: KarpathyMultimodalRNN(VOCAB, hidden_units=8, feature_dim=FEATURES, dropout=0.0),
    "mao": lambda: MaoMultimodalRNN(VOCAB, embedding_dims=(8, 8), multimodal_units=8, feature_dim=FEATURES,
                                    dropout=0.0),
}
WORDS = np.array([[4, 5, 6, 0], [7, 0, 0, 0], [8, 9, 10, 11], [4, 4, 0, 0], [11, 5, 0, 0]], np.int32)


def _step_log_likelihood(model, visual_row, ids):
    """log P(S | I) of one pair through the decoding-step API, one token at a time: an independent
    path (`step`, not the teacher-forced graph) to the same number."""
    state = model.initial_state(model.encode_visual(visual_row[np.newaxis]))
    total = 0.0
    for current, following in zip(ids[:-1], ids[1:]):
        if following == 0:
            break
        logits, state = model.step(tf.constant([current], tf.int32), state)
        total += float(tf.nn.log_softmax(logits)[0, following])
    return total


def test_caption_ids_add_start_and_end():
    ids = likelihood.caption_ids_from_words(WORDS[:2])
    np.testing.assert_array_equal(ids, [[1, 4, 5, 6, 2, 0], [1, 7, 2, 0, 0, 0]])


@pytest.mark.parametrize("name", sorted(CAPTIONERS))
def test_matrix_is_every_pairs_teacher_forced_log_likelihood(name):
    tf.random.set_seed(0)
    model = CAPTIONERS[name]()
    visual = np.random.default_rng(0).normal(size=(3, FEATURES)).astype(np.float32)
    ids = likelihood.caption_ids_from_words(WORDS)
    # max_rows 4: blocks of one image and 4 + 1 sentences, so the chunking is exercised too.
    got = likelihood.likelihood_matrix(model, visual, ids, max_rows=4)
    assert got.shape == (3, 5)
    want = np.array([[_step_log_likelihood(model, visual[i], ids[j]) for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.all(got < 0)
    # One call for all pairs gives the same matrix.
    np.testing.assert_allclose(likelihood.likelihood_matrix(model, visual, ids), got, rtol=1e-5, atol=1e-5)


def test_the_prior_is_the_blind_models_likelihood_and_normalising_subtracts_it():
    tf.random.set_seed(1)
    blind = LRCNCaptioner(VOCAB, variant="2f", hidden_units=8, embedding_dim=8, image_embedding_dim=8,
                          feature_dim=1, dropout=0.0)
    ids = likelihood.caption_ids_from_words(WORDS)
    prior = likelihood.sentence_log_prior(blind, ids)
    want = [_step_log_likelihood(blind, np.zeros(1, np.float32), row) for row in ids]
    np.testing.assert_allclose(prior, want, rtol=1e-4, atol=1e-4)
    # log P(S|I) - log P(S), column by column.
    log_p = np.array([[-1.0, -5.0], [-2.0, -3.0]])
    np.testing.assert_allclose(likelihood.normalise_by_prior(log_p, [-1.5, -6.0]), [[0.5, 1.0], [-0.5, 3.0]])
    with pytest.raises(ValueError, match="one value per sentence"):
        likelihood.normalise_by_prior(log_p, [-1.0, -2.0, -3.0])


def test_normalising_fixes_a_generic_sentence_and_leaves_image_search_alone():
    # Two images, one sentence each: sentence 0 ("a shape") is likely under every image; sentence 1
    # is specific to image 1. Raw likelihood annotates both images with sentence 0; divided by the
    # prior, image 1 gets its own sentence.
    log_p = np.array([[-2.0, -9.5],
                      [-2.5, -3.0]])
    prior = np.array([-1.0, -8.0])  # the blind LM: sentence 0 is common, sentence 1 rare
    normalised = likelihood.normalise_by_prior(log_p, prior)
    assert list(retrieval.annotation_ranks(log_p, 1)) == [1, 2]
    assert list(retrieval.annotation_ranks(normalised, 1)) == [1, 1]
    # A per-sentence constant cannot reorder the images of one sentence.
    np.testing.assert_array_equal(retrieval.search_ranks(log_p, 1), retrieval.search_ranks(normalised, 1))
