"""W_glove: GloVe-format files (a tiny one committed beside this test) and PPMI + SVD embeddings."""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest

from vcaption import text
from vcaption.noc import embeddings
from vcaption.noc.model import NOCCaptioner

GLOVE = pathlib.Path(__file__).resolve().parent / "glove_tiny.4d.txt"
WORDS = ["a", "red", "blue", "circle", "star", "in", "the", "top"]


def test_glove_file_loads_and_initialises_tied_w_glove():
    vectors = embeddings.load_glove(str(GLOVE), WORDS)
    assert sorted(vectors) == ["a", "circle", "red", "star", "the"]  # "square" not asked for, "blue" absent
    np.testing.assert_allclose(vectors["star"], [0.29864, 0.15204, -0.48172, 0.40218], rtol=1e-6)
    vocabulary = [*text.RESERVED_TOKENS, *WORDS]
    matrix, found = embeddings.embedding_matrix(vocabulary, vectors, 4)
    assert found == 5
    keras.utils.set_random_seed(0)
    model = NOCCaptioner(vocab_size=len(vocabulary), class_word_ids=[vocabulary.index("circle")],
                         hidden_units=8, embedding_dim=4, image_embedding_dim=5, encoder="small_cnn",
                         image_size=32)
    model.set_word_embeddings(matrix)
    star = vocabulary.index("star")
    # W_glove: the input embedding of "star" is the file's vector ...
    np.testing.assert_allclose(model.word_embedding(np.array([star])).numpy()[0], vectors["star"], rtol=1e-6)
    # ... and W_gloveᵀ (tied) scores a hidden vector h by h · w for every word w.
    hidden = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    scores = model.word_embedding(hidden, reverse=True).numpy()[0]
    np.testing.assert_allclose(scores[star], hidden[0] @ vectors["star"], rtol=1e-5)
    # Words the file lacks get small random rows, not zeros.
    assert 0 < np.linalg.norm(matrix[vocabulary.index("blue")]) < 0.5


def test_glove_width_must_match_the_model(tmp_path):
    vectors = embeddings.load_glove(str(GLOVE))
    with pytest.raises(ValueError, match="width \\[4\\].*embedding_dim is 300"):
        embeddings.embedding_matrix(["a"], vectors, 300)


def test_malformed_glove_lines_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("a 0.1 0.2\nred 0.3\n")
    with pytest.raises(ValueError, match="bad.txt:2: 1 values where the first line has 2"):
        embeddings.load_glove(str(bad))
    bad.write_text("a 0.1 x\n")
    with pytest.raises(ValueError, match="bad.txt:1: not a number"):
        embeddings.load_glove(str(bad))


def test_ppmi_svd_puts_words_of_the_same_slot_together(tmp_path):
    rng = np.random.default_rng(0)
    colours, shapes = ["red", "blue", "green"], ["circle", "star", "square"]
    sentences = [["a", colours[rng.integers(3)], shapes[rng.integers(3)], "in", "the", "top"] for _ in range(300)]
    vectors = embeddings.train_ppmi_svd(sentences, dim=6)
    cosine = {(a, b): float(vectors[a] @ vectors[b]) for a in vectors for b in vectors}  # rows are unit length
    assert cosine[("star", "circle")] > cosine[("star", "red")] + 0.3
    assert cosine[("red", "blue")] > cosine[("red", "square")] + 0.3
    # The cache is a GloVe file that loads back to the same vectors.
    path = embeddings.write_glove(str(tmp_path / "cache.txt"), vectors)
    again = embeddings.load_glove(path)
    np.testing.assert_allclose(again["star"], vectors["star"], atol=1e-5)
    assert embeddings.train_ppmi_svd(sentences, dim=6)["star"].tolist() == vectors["star"].tolist()
