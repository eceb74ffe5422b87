"""RegionRanker (Karpathy & Fei-Fei Eqs. 1-9): scores, loss, BRNN padding, both region paths."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import run_saving_test, run_serialization_test

from vcaption.retrieval import ranker

VOCAB = 20


def _inputs(batch=3, regions=3, seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.tile(np.array([[0, 0, 1, 1], [0.1, 0.1, 0.5, 0.5], [0.5, 0.4, 0.9, 0.95]], np.float32),
                    (batch, 1, 1))[:, :regions]
    words = np.array([[4, 5, 6, 0], [7, 8, 0, 0], [9, 10, 11, 12]], np.int32)[:batch]
    return {"image": rng.integers(0, 255, (batch, 32, 32, 3)).astype(np.uint8), "boxes": boxes,
            "words": words}


def _model(**kwargs):
    args = dict(vocab_size=VOCAB, hidden_units=8, embedding_dim=8, image_size=32, crop_size=16,
                feature_dim=8, filters=(4, 8))
    return ranker.RegionRanker(**{**args, **kwargs})


def test_pairwise_scores_is_equation_8():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 4, 5)).astype(np.float32)
    s = rng.normal(size=(2, 6, 5)).astype(np.float32)
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]])
    got = ranker.pairwise_scores(v, s, ids).numpy()
    want = np.zeros((3, 2))
    for k in range(3):
        for l in range(2):
            want[k, l] = sum(max(v[k, i] @ s[l, t] for i in range(4)) for t in range(6) if ids[l, t])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    mean = ranker.pairwise_scores(v, s, ids, "mean").numpy()
    np.testing.assert_allclose(mean, want / np.array([3, 6]), rtol=1e-5, atol=1e-5)


def test_equation_7_on_a_hand_computed_case():
    # One image with two regions, one sentence of two words (and padding), h = 2:
    #   v_1 = (1, 0), v_2 = (0, 2);  s_1 = (3, -1), s_2 = (-1, -1), s_3 = padding (9, 9).
    #   v_1ᵀs_1 = 3, v_2ᵀs_1 = -2, v_1ᵀs_2 = -1, v_2ᵀs_2 = -2.
    #   Eq. 7: max(0, 3) + max(0, -2) + max(0, -1) + max(0, -2) = 3.
    #   Eq. 8: max(3, -2) + max(-1, -2) = 3 - 1 = 2.
    v = np.array([[[1.0, 0.0], [0.0, 2.0]]], np.float32)
    s = np.array([[[3.0, -1.0], [-1.0, -1.0], [9.0, 9.0]]], np.float32)
    ids = np.array([[5, 6, 0]])
    assert float(ranker.pairwise_scores(v, s, ids, score="eq7")[0, 0]) == pytest.approx(3.0)
    assert float(ranker.pairwise_scores(v, s, ids)[0, 0]) == pytest.approx(2.0)
    assert float(ranker.pairwise_scores(v, s, ids, "mean", score="eq7")[0, 0]) == pytest.approx(1.5)
    assert float(ranker.paired_scores(v, s, ids, score="eq7")[0]) == pytest.approx(3.0)
    # A second positive region adds to Eq. 7 but not to Eq. 8's max: v_3 = (1, 0) again.
    v3 = np.concatenate([v, [[[2.0, 0.0]]]], axis=1)
    assert float(ranker.pairwise_scores(v3, s, ids, score="eq7")[0, 0]) == pytest.approx(3.0 + 6.0)
    assert float(ranker.pairwise_scores(v3, s, ids)[0, 0]) == pytest.approx(6.0 - 1.0)


def test_equation_7_counts_a_repeated_box_once(tmp_path):
    model = _model(score="eq7")
    x = _inputs(regions=2)
    padded = dict(x, boxes=np.concatenate([x["boxes"], x["boxes"][:, :1], x["boxes"][:, 1:2]], axis=1))
    regions = model.embed_regions(padded["image"], padded["boxes"]).numpy()  # [3, 4, 8]
    assert np.all(regions[:, 2:] == 0)  # the two repeats are zero vectors
    words = model.embed_words(x["words"])
    np.testing.assert_allclose(model.score(regions, words, x["words"]),
                               model.score(model.embed_regions(x["image"], x["boxes"]), words, x["words"]),
                               rtol=1e-5, atol=1e-5)
    # Eq. 8's max ignores repeats without any masking: the layer is only in an Eq. 7 model.
    assert "distinct_regions" not in [layer.name for layer in _model().layers]
    run_saving_test(model, padded, tmp_path, atol=1e-5)


def test_fragment_loss_is_defrags_objective_with_balanced_signs():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(3, 2, 4)).astype(np.float32)
    boxes = np.tile(np.array([[[0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]]], np.float32), (3, 1, 1))
    boxes[2, 1] = boxes[2, 0]  # a repeated region: left out
    s = rng.normal(size=(3, 3, 4)).astype(np.float32)
    ids = np.array([[4, 5, 0], [6, 0, 0], [7, 8, 9]])
    positive, negative = [], []
    for k in range(3):
        for l in range(3):
            for i in range(2):
                for t in range(3):
                    if ids[l, t] and not (k == 2 and i == 1):
                        y = 1.0 if k == l else -1.0
                        (positive if k == l else negative).append(max(0.0, 1.0 - y * float(v[k, i] @ s[l, t])))
    want = np.mean(positive) + np.mean(negative)
    assert float(ranker.fragment_loss(v, s, ids, boxes)) == pytest.approx(want, rel=1e-5)


def test_ranking_loss_is_equation_9_and_vsepp_takes_the_hardest():
    scores = np.array([[3.0, 2.5, 0.0], [1.0, 1.0, 4.0], [0.2, 0.1, 2.0]], np.float32)
    want = 0.0
    for k in range(3):
        for l in range(3):
            if l != k:
                want += max(0, scores[k, l] - scores[k, k] + 1) + max(0, scores[l, k] - scores[k, k] + 1)
    assert float(ranker.ranking_loss(scores)) == pytest.approx(want / 3)
    hardest = sum(max(max(0, scores[k, l] - scores[k, k] + 1) for l in range(3) if l != k)
                  + max(max(0, scores[l, k] - scores[k, k] + 1) for l in range(3) if l != k)
                  for k in range(3))
    assert float(ranker.ranking_loss(scores, hardest_negative=True)) == pytest.approx(hardest / 3)
    # A perfectly separated batch costs nothing.
    assert float(ranker.ranking_loss(np.eye(3, dtype=np.float32) * 5)) == 0.0


@pytest.mark.parametrize("region_features", ranker.REGION_FEATURES)
def test_shapes_halves_and_saving(region_features, tmp_path):
    model = _model(region_features=region_features, crop_size=16 if region_features == "crop" else 2)
    x = _inputs()
    out = model(x)
    assert out["regions"].shape == (3, 3, 8) and out["words"].shape == (3, 4, 8)
    np.testing.assert_allclose(model.embed_regions(x["image"], x["boxes"]), out["regions"], atol=1e-5)
    np.testing.assert_allclose(model.embed_words(x["words"]), out["words"], atol=1e-5)
    # Word vectors s_t come out of a ReLU (Eq. 6).
    assert np.all(out["words"].numpy() >= 0)
    run_serialization_test(model)
    run_saving_test(model, x, tmp_path, atol=1e-5)


def test_padding_does_not_change_word_embeddings():
    """The backward RNN (Eq. 5) starts at each sentence's last word, not at the padding."""
    model = _model()
    short = model.embed_words(np.array([[4, 5, 6]], np.int32)).numpy()
    padded = model.embed_words(np.array([[4, 5, 6, 0, 0, 0]], np.int32)).numpy()
    np.testing.assert_allclose(padded[:, :3], short, atol=1e-5)
    # ... and the backward direction is real: the first word depends on the last one.
    other = model.embed_words(np.array([[4, 5, 7]], np.int32)).numpy()
    assert not np.allclose(other[0, 0], short[0, 0])


def test_crop_path_sees_only_its_box():
    model = _model(box_geometry=False)
    x = _inputs(batch=1)
    changed = x["image"].copy()
    changed[0, 24:, :8] = 255 - changed[0, 24:, :8]  # outside box 1 (rows 3..16, cols 3..16)
    before = model.embed_regions(x["image"], x["boxes"]).numpy()
    after = model.embed_regions(changed, x["boxes"]).numpy()
    # Relative as well as absolute: with unseeded random weights the features' scale varies from
    # run to run, and oneDNN's float rounding with it (an absolute 1e-5 failed once under load). A
    # leak from outside the box would move them by whole activations, far beyond this.
    np.testing.assert_allclose(after[0, 1], before[0, 1], rtol=1e-4, atol=1e-5)
    assert not np.allclose(after[0, 0], before[0, 0])  # the whole image did change


def test_training_lowers_the_loss():
    tf.random.set_seed(0)
    model = _model()
    x = _inputs()
    dataset = tf.data.Dataset.from_tensors(x).repeat()
    model.compile(optimizer="adam")
    # training=True: BatchNorm uses this batch's statistics, as inside fit.
    start = float(model.compute_loss(x, None, model(x, training=True)))
    model.fit(dataset, steps_per_epoch=30, epochs=1, verbose=0)
    assert float(model.compute_loss(x, None, model(x, training=True))) < 0.5 * start


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="region_features"):
        _model(region_features="selective")
    with pytest.raises(ValueError, match="score_normalization"):
        _model(score_normalization="max")
    with pytest.raises(ValueError, match="score must be one of"):
        _model(score="eq9")
