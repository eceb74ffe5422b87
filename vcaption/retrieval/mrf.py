"""Word -> region alignment with the chain MRF of Karpathy & Fei-Fei (§3.1.4, Eqs. 10-12).

For a sentence of N words and an image of M regions, the alignment a = (a_1 .. a_N), a_j in 1..M,
maximises

    E(a) = Σ_j ψ^U_j(a_j) + Σ_{j<N} ψ^B_j(a_j, a_{j+1})          (10)
    ψ^U_j(a_j = t) = v_tᵀ s_j                                    (11)
    ψ^B_j(a_j, a_{j+1}) = β · 1[a_j = a_{j+1}]                    (12)

(the paper writes an energy to minimise; the signs here make β reward contiguous snippets, which
is what the paper's β does). `viterbi` finds the exact maximiser by dynamic programming in
O(N M^2) — here O(N M), since the pairwise term only distinguishes "same" from "different":

    best_j(t) = ψ^U_j(t) + max(best_{j-1}(t) + β, max_k best_{j-1}(k)).

β = 0 gives the word-by-word argmax; β larger than the spread of the unaries gives one region
for the whole sentence. Runs of equal a_j are the snippets that become region descriptions
(`snippets`, `visual_genome_regions`).

Two implementations of the same recursion, kept side by side so that they stay the same (a test
compares them): `viterbi` in NumPy for evaluation and the snippet datasets, `viterbi_tf` in-graph
for the ranker's SavedModel (`vcaption.retrieval.export`, signature `align`).

Example:
    >>> unary = region_embeddings @ word_embeddings.T  # [M, N]: v_tᵀ s_j
    >>> assignment, energy = viterbi(unary.T, beta=2.0)
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import tensorflow as tf


def viterbi(unary: np.ndarray, beta: float) -> tuple[np.ndarray, float]:
    """The assignment maximising Eq. 10 and its value.

    Args:
        unary: float [N words, M regions], ψ^U_j(t) = v_tᵀ s_j (Eq. 11).
        beta: the reward β >= 0 for consecutive words on the same region (Eq. 12).

    Returns:
        (int64 [N] region index of each word, E(a)). Ties go to the lowest region index and, in
        the recursion, to staying on the same region.
    """
    unary = np.asarray(unary, dtype=np.float64)
    if unary.ndim != 2 or unary.shape[1] == 0:
        raise ValueError(f"unary must be [words, regions] with >= 1 region, got shape {unary.shape}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    words, regions = unary.shape
    if words == 0:
        return np.zeros(0, np.int64), 0.0
    best = unary[0].copy()  # [M]: best E of words 0..j ending on region t
    stay = np.zeros((words, regions), bool)  # came from the same region (else from the best one)
    came_from = np.zeros(words, np.int64)  # argmax_k best_{j-1}(k), shared by every t
    for j in range(1, words):
        top = int(np.argmax(best))
        came_from[j] = top
        stay[j] = best + beta >= best[top]
        best = unary[j] + np.where(stay[j], best + beta, best[top])
    assignment = np.zeros(words, np.int64)
    assignment[-1] = int(np.argmax(best))
    for j in range(words - 1, 0, -1):
        t = assignment[j]
        assignment[j - 1] = t if stay[j, t] else came_from[j]
    return assignment, float(np.max(best))


def viterbi_tf(unary: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """`viterbi` as TensorFlow ops (same recursion, same tie rules), for graphs that are served.

    Args:
        unary: float [N words, M regions] with N >= 1, ψ^U_j(t) = v_tᵀ s_j (Eq. 11).
        beta: float scalar β >= 0 (Eq. 12).

    Returns:
        int32 [N]: the region index of each word.
    """
    unary = tf.cast(unary, tf.float32)
    beta = tf.cast(beta, tf.float32)

    def forward(carry, row):
        best, _, _ = carry
        top = tf.argmax(best, output_type=tf.int32)
        stay = best + beta >= tf.gather(best, top)
        new = row + tf.where(stay, best + beta, tf.gather(best, top))
        return new, stay, top

    first = unary[0]
    regions = tf.shape(unary)[1]
    init = (first, tf.zeros([regions], tf.bool), tf.constant(0, tf.int32))
    best, stays, tops = tf.scan(forward, unary[1:], initializer=init)  # [N - 1, M], [N - 1, M], [N - 1]
    final = tf.concat([first[tf.newaxis], best], axis=0)[-1]
    last = tf.argmax(final, output_type=tf.int32)

    def backward(t, step):
        stay, top = step
        return tf.where(tf.gather(stay, t), t, top)

    earlier = tf.scan(backward, (stays, tops), initializer=last, reverse=True)  # [N - 1]: a_0 .. a_{N-2}
    return tf.concat([earlier, last[tf.newaxis]], axis=0)


def energy(unary: np.ndarray, assignment: Sequence[int], beta: float) -> float:
    """E(a) of Eq. 10 for one assignment."""
    unary = np.asarray(unary, dtype=np.float64)
    a = np.asarray(assignment)
    value = float(np.sum(unary[np.arange(len(a)), a]))
    return value + beta * float(np.sum(a[1:] == a[:-1]))


def brute_force(unary: np.ndarray, beta: float) -> tuple[np.ndarray, float]:
    """The maximiser of Eq. 10 by enumerating all M^N assignments (tests, tiny inputs only)."""
    unary = np.asarray(unary, dtype=np.float64)
    words, regions = unary.shape
    if regions ** words > 2_000_000:
        raise ValueError(f"brute force over {regions}^{words} assignments is too many")
    best, best_a = -np.inf, None
    for a in itertools.product(range(regions), repeat=words):
        value = energy(unary, a, beta)
        if value > best:
            best, best_a = value, a
    return np.array(best_a, np.int64), float(best)


def snippets(assignment: Sequence[int], tokens: Sequence[str], unary: np.ndarray | None = None) -> list[dict]:
    """Runs of consecutive words on one region: [{"region", "start", "end", "text", "score"}]
    (`end` exclusive; `score` the mean v_tᵀ s_j over the run, when `unary` is given)."""
    out = []
    for region, run in itertools.groupby(enumerate(assignment), key=lambda x: int(x[1])):
        positions = [j for j, _ in run]
        start, end = positions[0], positions[-1] + 1
        item = {"region": region, "start": start, "end": end, "text": " ".join(tokens[start:end])}
        if unary is not None:
            item["score"] = float(np.mean(np.asarray(unary)[start:end, region]))
        out.append(item)
    return out


def visual_genome_regions(image_id, boxes: np.ndarray, source_size: Sequence[int],
                          pieces: Sequence[dict], first_region_id: int = 0) -> dict:
    """One image of Visual Genome's `region_descriptions.json` from aligned snippets.

    Args:
        image_id: the image id (an int when it is one, as in Visual Genome).
        boxes: float [M, 4] normalised (ymin, xmin, ymax, xmax) of the regions.
        source_size: (height, width) of the image in pixels.
        pieces: `snippets` output (possibly of several sentences).
        first_region_id: region ids count up from here.

    Returns:
        {"id": image_id, "regions": [{"region_id", "image_id", "x", "y", "width", "height", "phrase"}]}
    """
    height, width = (int(v) for v in source_size)
    image_id = int(image_id) if str(image_id).isdigit() else image_id
    regions = []
    for k, piece in enumerate(pieces):
        ymin, xmin, ymax, xmax = (float(c) for c in boxes[piece["region"]])
        regions.append({"region_id": first_region_id + k, "image_id": image_id,
                        "x": int(round(xmin * width)), "y": int(round(ymin * height)),
                        "width": int(round((xmax - xmin) * width)),
                        "height": int(round((ymax - ymin) * height)), "phrase": piece["text"]})
    return {"id": image_id, "regions": regions}
