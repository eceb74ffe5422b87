"""The ranker SavedModel: four signatures, hermetic load, the same numbers as the Keras model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

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
score = loaded.signatures["score"](image_bytes=jpeg, boxes=boxes, sentences=tf.constant(["a red circle", "blue"]))
al = loaded.signatures["align"](image_bytes=jpeg[0], boxes=boxes[0], sentence=tf.constant("a red circle and a blue square"), beta=tf.constant(0.0))
print(json.dumps({{"regions": emb["regions"].numpy().tolist(), "boxes": emb["boxes"].numpy().tolist(),
                  "words": sent["words"].numpy().tolist(), "lengths": sent["lengths"].numpy().tolist(),
                  "scores": score["scores"].numpy().tolist(), "align_regions": al["regions"].numpy().tolist(),
                  "align_scores": al["scores"].numpy().tolist(),
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
    np.testing.assert_allclose(got["scores"], model.score(regions, words, ids).numpy(), atol=1e-4)
    # align = Viterbi (beta 0: word-wise argmax) over the words of the sentence.
    sentence = vocab.lookup(text.tokenize(tf.constant(["a red circle and a blue square"]))).numpy()[0]
    unary = model.embed_words(sentence[np.newaxis].astype(np.int32)).numpy()[0] @ regions[0].T
    np.testing.assert_array_equal(got["align_regions"], np.argmax(unary, axis=1))
    np.testing.assert_allclose(got["align_scores"], np.max(unary, axis=1), atol=1e-4)
