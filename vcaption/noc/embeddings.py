"""Word embeddings W_glove for the Novel Object Captioner: GloVe-format files, or trained here.

NOC (Venugopalan et al., CVPR 2017; the lecture's "Diversifying captions", Insight 2: "capture
semantic similarity of words") ties the language model's input embedding W_glove and its output
layer W_gloveᵀ, initialised from GloVe, so that a word never seen in a paired caption ("okapi")
sits next to words that were ("zebra"). Two sources, one format:

* a GloVe text file, `word d1 d2 ... dn` per line (e.g. `glove.6B.300d.txt` where a user has it);
* offline, embeddings trained in-package on the unpaired text corpus: positive pointwise mutual
  information of words within a window, reduced by a truncated SVD (Levy & Goldberg 2014 show
  this matches skip-gram's implicit factorisation). They are cached in the run directory as a
  GloVe-format file, so the cache is itself loadable by `load_glove`.
"""

from __future__ import annotations

import collections
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

# The scale of the random rows given to words an embedding file lacks (reserved tokens, typos):
# small next to trained vectors, which the rows are normalised to (unit length).
MISSING_ROW_SCALE = 0.1


def load_glove(path: str, words: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """{word: float32[d]} from a GloVe-format text file (`word d1 ... dn` per line); with `words`,
    only those (a 6B-token file has 400,000 lines; a captioner needs a few thousand).

    Raises ValueError naming the file and line when a line's width differs from the first's.
    """
    wanted = None if words is None else set(words)
    vectors, dim = {}, None
    with tf.io.gfile.GFile(path) as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < 2:
                continue  # blank line
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise ValueError(f"{path}:{number}: {len(parts) - 1} values where the first line has {dim}")
            if wanted is None or parts[0] in wanted:
                try:
                    vectors[parts[0]] = np.asarray(parts[1:], np.float32)
                except ValueError as error:
                    raise ValueError(f"{path}:{number}: not a number in the vector of {parts[0]!r}") from error
    if dim is None:
        raise ValueError(f"{path}: no vectors (expected `word d1 d2 ...` lines)")
    return vectors


def write_glove(path: str, vectors: dict[str, np.ndarray]) -> str:
    """Writes `vectors` in GloVe text format (the run directory's embedding cache)."""
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        for word, vector in vectors.items():
            f.write(word + " " + " ".join(f"{v:.6f}" for v in vector) + "\n")
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return path


def train_ppmi_svd(sentences: Sequence[Sequence[str]], dim: int, window: int = 2,
                   min_count: int = 1) -> dict[str, np.ndarray]:
    """Word vectors of tokenized `sentences`: PPMI of co-occurrence within `window` words, then
    the top-`dim` SVD factors U·sqrt(S), rows scaled to unit length.

    Deterministic (no sampling), so a run that re-trains them gets the same vectors.
    """
    counts = collections.Counter(w for s in sentences for w in s)
    words = sorted(w for w, c in counts.items() if c >= min_count)
    index = {w: i for i, w in enumerate(words)}
    cooc = np.zeros((len(words), len(words)), np.float64)
    for sentence in sentences:
        ids = [index.get(w) for w in sentence]
        for i, a in enumerate(ids):
            for j in range(max(0, i - window), min(len(ids), i + window + 1)):
                if j != i and a is not None and ids[j] is not None:
                    cooc[a, ids[j]] += 1.0
    total = cooc.sum()
    row, col = cooc.sum(1, keepdims=True), cooc.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(cooc * total / (row * col))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    u, s, _ = np.linalg.svd(ppmi)
    k = min(dim, len(words))
    vectors = u[:, :k] * np.sqrt(s[:k])
    if k < dim:  # fewer words than dimensions: the rest are zero
        vectors = np.pad(vectors, ((0, 0), (0, dim - k)))
    # The SVD's sign per factor is arbitrary; fix it so that equal inputs give equal files.
    vectors *= np.where(vectors[np.abs(vectors).argmax(0), np.arange(dim)] < 0, -1.0, 1.0)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-8)
    return {w: vectors[i].astype(np.float32) for i, w in enumerate(words)}


def embedding_matrix(vocabulary: Sequence[str], vectors: dict[str, np.ndarray], dim: int,
                     seed: int = 0) -> tuple[np.ndarray, int]:
    """(float32[V, dim] rows of `vectors` in vocabulary order, how many words it had); words it
    lacks get small random rows. Vectors of another width are an error naming both widths."""
    widths = {len(v) for v in vectors.values()}
    if widths and widths != {dim}:
        raise ValueError(f"embeddings have width {sorted(widths)}, the model's embedding_dim is {dim}")
    rng = np.random.default_rng(seed)
    matrix = rng.normal(0.0, MISSING_ROW_SCALE / np.sqrt(dim), size=(len(vocabulary), dim)).astype(np.float32)
    found = 0
    for i, word in enumerate(vocabulary):
        if word in vectors:
            matrix[i] = vectors[word]
            found += 1
    return matrix, found
