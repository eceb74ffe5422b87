"""VisualSemanticEmbedding (Kiros et al. SH, VSE++ MH): losses, cosine space, the ranker interface, export."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import run_batching_test, run_saving_test, run_serialization_test

from vcaption import images, text
from vcaption.retrieval import vse
from vcaption.retrieval.export import export_vse
from vcaption.runtime import export_core

WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "red", "circle", "blue", "square", "and"]


def _model(**kwargs):
    args = dict(vocab_size=len(WORDS), embedding_dim=8, word_dim=8, image_size=32, feature_dim=8,
                filters=(4, 8))
    return vse.VisualSemanticEmbedding(**{**args, **kwargs})


def _inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 255, (batch, 32, 32, 3)).astype(np.uint8),
            "boxes": np.tile(np.array([[[0, 0, 1, 1]]], np.float32), (batch, 1, 1)),
            "words": np.array([[4, 5, 6, 0], [7, 8, 0, 0], [4, 9, 5, 6]], np.int32)[:batch]}


def _brute_force_loss(scores, margin, hardest):
    """The papers' loss written as loops: for each matching pair (k, k), the hinges of every wrong
    sentence c' for image k and of every wrong image i' for sentence k, summed (Kiros et al.) or
    only the largest of each (VSE++); averaged over the pairs."""
    n = len(scores)
    total = 0.0
    for k in range(n):
        sentences = [max(0.0, margin - scores[k][k] + scores[k][c]) for c in range(n) if c != k]
        image_hinges = [max(0.0, margin - scores[k][k] + scores[i][k]) for i in range(n) if i != k]
        total += (max(sentences) + max(image_hinges)) if hardest else (sum(sentences) + sum(image_hinges))
    return total / n


@pytest.mark.parametrize("hardest", [False, True], ids=["kiros_sum_of_hinges", "vsepp_max_of_hinges"])
def test_loss_equals_a_brute_force_loop(hardest):
    rng = np.random.default_rng(1)
    for trial in range(5):
        n = int(rng.integers(2, 7))
        image = rng.normal(size=(n, 4))
        sentence = rng.normal(size=(n, 4))
        image /= np.linalg.norm(image, axis=1, keepdims=True)
        sentence /= np.linalg.norm(sentence, axis=1, keepdims=True)
        cosine = image @ sentence.T
        want = _brute_force_loss(cosine.tolist(), 0.2, hardest)
        model = _model(hardest_negative=hardest)
        got = model.compute_loss(None, None, {"image": tf.constant(image, tf.float32),
                                              "sentence": tf.constant(sentence, tf.float32)})
        assert float(got) == pytest.approx(want, rel=1e-5, abs=1e-6), trial
    # The two losses differ where one pair has several violating negatives.
    cosine = np.array([[0.5, 0.45, 0.4], [0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])
    assert _brute_force_loss(cosine, 0.2, False) > _brute_force_loss(cosine, 0.2, True) > 0


def test_embeddings_are_unit_cosine_and_serve_the_ranker_interface(tmp_path):
    model = _model(sentence_cell="lstm")
    x = _inputs()
    out = model(x)
    assert out["image"].shape == (3, 8) and out["sentence"].shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(out["image"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["sentence"], axis=1), 1.0, atol=1e-5)
    # Padding does not move a sentence: the RNN stops at its last word.
    padded = np.pad(x["words"], [(0, 0), (0, 3)])
    np.testing.assert_allclose(model.embed_sentences(padded), out["sentence"], atol=1e-5)
    regions, words = model.embed_regions(x["image"], x["boxes"]), model.embed_words(x["words"])
    assert regions.shape == (3, 1, 8) and words.shape == (3, 1, 8)
    np.testing.assert_allclose(model.score(regions, words, x["words"]),
                               out["image"].numpy() @ out["sentence"].numpy().T, atol=1e-5)
    run_serialization_test(model)
    run_saving_test(model, x, tmp_path, atol=1e-5)


def test_training_lowers_the_loss():
    tf.random.set_seed(0)
    model = _model(hardest_negative=False)
    x = _inputs()
    model.compile(optimizer="adam")
    start = float(model.compute_loss(x, None, model(x, training=True)))
    model.fit(tf.data.Dataset.from_tensors(x).repeat(), steps_per_epoch=40, epochs=1, verbose=0)
    assert float(model.compute_loss(x, None, model(x, training=True))) < 0.5 * start


def test_bad_cell_is_refused():
    with pytest.raises(ValueError, match="sentence_cell"):
        _model(sentence_cell="rnn")


def test_export_embeds_scores_and_batches(tmp_path):
    vocab_path = text.Vocabulary.write(WORDS, str(tmp_path / "vocab.txt"))
    model = _model()
    path = export_vse(model, vocab_path, str(tmp_path / "saved"), "vse")
    jpeg = export_core.warmup_jpeg(48)
    sentence = np.array([b"a red circle and a blue square"], object)
    run_batching_test(path, {
        "embed_image": {"image_bytes": np.array([jpeg], object)},
        "embed_sentence": {"sentences": sentence},
        "score": {"image_bytes": np.array([jpeg], object), "sentences": sentence},
        "serving_default": {"image_bytes": np.array([jpeg], object), "sentences": sentence},
    })
    loaded = tf.saved_model.load(path)
    image = loaded.signatures["embed_image"](image_bytes=tf.constant([jpeg]))["embedding"].numpy()
    pixels = images.preprocess_image(tf.constant(jpeg), 32)[tf.newaxis]
    np.testing.assert_allclose(image, model.embed_images(pixels), atol=1e-4)
    sent = loaded.signatures["embed_sentence"](sentences=tf.constant(["A red circle!", "", "blue"]))
    assert sent["lengths"].numpy().tolist() == [3, 0, 1]
    ids = np.array([[4, 5, 6]], np.int32)
    np.testing.assert_allclose(sent["embedding"].numpy()[0], model.embed_sentences(ids)[0], atol=1e-4)
    np.testing.assert_allclose(sent["embedding"].numpy()[1], 0.0)  # no words: the zero vector
    both = loaded.signatures["score"](image_bytes=tf.constant([jpeg]), sentences=tf.constant(["a red circle"]))
    np.testing.assert_allclose(both["scores"].numpy(), image @ sent["embedding"].numpy()[0], atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sentences must have one row per image"):
        loaded.signatures["score"](image_bytes=tf.constant([jpeg]), sentences=tf.constant(["red", "blue"]))
    # A batch of only empty sentences still runs.
    empty = loaded.signatures["embed_sentence"](sentences=tf.constant(["", "!"]))
    assert empty["embedding"].shape == (2, 8)
