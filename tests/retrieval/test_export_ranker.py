"""The ranker SavedModel: four signatures, hermetic load, the same numbers as the Keras model, batchable."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import run_batching_test

from vcaption import text
from vcaption.retrieval.export import export_ranker
from vcaption.retrieval.ranker import RegionRanker
from vcaption.runtime import export_core

WORDS = ["<pad>", "<start>", "<end>", "<unk>", "a", "red", "circle", "blue", "square", "and"]


@pytest.mark.slow
def test_export_serves_every_signature_in_a_fresh_process(tmp_path):
    vocab_path = text.Vocabulary.write(WORDS, str(tmp_path / "vocab.txt"))
    model = RegionRanker(vocab_size=len(WORDS), hidden_units=8, embedding_dim=8, image_size=32, crop_size=16,
                         feature_dim=8, filters=(4, 8))
    path = export_ranker(model, vocab_path, str(tmp_path / "saved"), "ranker")
    assert path.endswith("/1")
    jpeg = export_core.warmup_jpeg(48)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]], np.float32)
    script = f"""
import json, sys
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load({path!r})
jpeg = tf.constant([{jpeg!r}])
boxes = tf.constant({boxes.tolist()!r}, tf.float32)
emb = loaded.signatures["embed_image"](image_bytes=jpeg, boxes=boxes)
sent = loaded.signatures["embed_sentence"](sentences=tf.constant(["A red circle and a blue square!", "red"]))
pairs = tf.concat([jpeg, jpeg], 0), tf.concat([boxes, boxes], 0)
score = loaded.signatures["score"](image_bytes=pairs[0], boxes=pairs[1], sentences=tf.constant(["a red circle", "blue"]))
al = loaded.signatures["align"](image_bytes=pairs[0], boxes=pairs[1],
                                sentence=tf.constant(["a red circle and a blue square", "red"]),
                                beta=tf.constant([0.0, 0.0]))
print(json.dumps({{"regions": emb["regions"].numpy().tolist(), "boxes": emb["boxes"].numpy().tolist(),
                  "words": sent["words"].numpy().tolist(), "lengths": sent["lengths"].numpy().tolist(),
                  "scores": score["scores"].numpy().tolist(), "align_regions": al["regions"].numpy().tolist(),
                  "align_scores": al["scores"].numpy().tolist(), "align_lengths": al["lengths"].numpy().tolist(),
                  "align_tokens": [[t.decode() for t in row] for row in al["tokens"].numpy()],
                  "modules": sorted(m for m in sys.modules if m.startswith("vcaption"))}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["modules"] == []  # hermetic: no vcaption import needed
    # The same numbers from the Keras model.
    from vcaption import images

    pixels = images.preprocess_image(tf.constant(jpeg), 32)[tf.newaxis]
    full_boxes = np.concatenate([[[[0, 0, 1, 1]]], boxes], axis=1).astype(np.float32)
    regions = model.embed_regions(pixels, tf.constant(full_boxes)).numpy()
    np.testing.assert_allclose(got["regions"], regions, atol=1e-4)
    np.testing.assert_allclose(got["boxes"], full_boxes, atol=1e-6)
    assert got["lengths"] == [7, 1]
    vocab = text.Vocabulary(vocab_path)
    ids = vocab.lookup(text.tokenize(tf.constant(["a red circle", "blue"]))).to_tensor().numpy().astype(np.int32)
    words = model.embed_words(tf.constant(ids)).numpy()
    # One score per (image, sentence) row: the image against each sentence, S of Eq. 8.
    np.testing.assert_allclose(got["scores"], model.score(regions, words, ids).numpy()[0], atol=1e-4)
    # align = Viterbi (beta 0: word-wise argmax) over the words of each row's sentence; the
    # shorter sentence is padded (region -1, score 0) to the longer one's 7 words.
    assert got["align_lengths"] == [7, 1]
    assert got["align_tokens"][1] == ["red"] + [""] * 6
    for row, sentence in enumerate(["a red circle and a blue square", "red"]):
        ids = vocab.lookup(text.tokenize(tf.constant([sentence]))).numpy()[0]
        unary = model.embed_words(ids[np.newaxis].astype(np.int32)).numpy()[0] @ regions[0].T
        n = len(ids)
        np.testing.assert_array_equal(got["align_regions"][row][:n], np.argmax(unary, axis=1))
        np.testing.assert_allclose(got["align_scores"][row][:n], np.max(unary, axis=1), atol=1e-4)
        assert got["align_regions"][row][n:] == [-1] * (7 - n) and got["align_scores"][row][n:] == [0.0] * (7 - n)


def test_every_ranker_signature_batches_row_for_row(tmp_path):
    vocab_path = text.Vocabulary.write(WORDS, str(tmp_path / "vocab.txt"))
    model = RegionRanker(vocab_size=len(WORDS), hidden_units=8, embedding_dim=8, image_size=32, crop_size=16,
                         feature_dim=8, filters=(4, 8))
    path = export_ranker(model, vocab_path, str(tmp_path / "saved"), "ranker")
    image = {"image_bytes": np.array([export_core.warmup_jpeg(48)], object),
             "boxes": np.array([[[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]], np.float32)}
    sentence = np.array([b"a red circle and a blue square"], object)
    run_batching_test(path, {
        "embed_image": image,
        "embed_sentence": {"sentences": sentence},
        "score": {**image, "sentences": sentence},
        "serving_default": {**image, "sentences": sentence},
        "align": {**image, "sentence": sentence, "beta": np.array([0.5], np.float32)},
    })
    # Rows of one request must agree: a mismatch is named instead of being broadcast.
    loaded = tf.saved_model.load(path)
    with pytest.raises(tf.errors.InvalidArgumentError, match="sentences must have one row per image"):
        loaded.signatures["score"](image_bytes=tf.constant(image["image_bytes"]), boxes=tf.constant(image["boxes"]),
                                   sentences=tf.constant([b"red", b"blue"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="beta must be >= 0"):
        loaded.signatures["align"](image_bytes=tf.constant(image["image_bytes"]), boxes=tf.constant(image["boxes"]),
                                   sentence=tf.constant(sentence), beta=tf.constant([-1.0]))
