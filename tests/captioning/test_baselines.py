"""Nearest-neighbour baseline: the consensus caption (Devlin et al. 2015) among retrieved captions."""

from __future__ import annotations

import collections

import numpy as np

from vcaption.captioning.baselines import consensus_caption


def _f1(a: str, b: str) -> float:
    """The definition, written out: F1 of clipped 1- and 2-gram overlap."""
    def grams(caption):
        words = caption.split()
        return collections.Counter(tuple(words[i:i + n]) for n in (1, 2)
                                   for i in range(len(words) - n + 1))
    ga, gb = grams(a), grams(b)
    overlap = sum((ga & gb).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(ga.values()), overlap / sum(gb.values())
    return 2 * precision * recall / (precision + recall)


def _reference_consensus(candidates: list[str]) -> str:
    scores = [np.mean([_f1(c, d) for j, d in enumerate(candidates) if j != i])
              for i, c in enumerate(candidates)]
    best = max(scores)
    return candidates[next(i for i, s in enumerate(scores) if abs(s - best) < 1e-9)]


def test_consensus_is_the_caption_closest_to_the_others():
    # "a red circle" (3 unigrams + 2 bigrams = 5 n-grams) against "a red square" (5): overlap
    # "a", "red", "a red" = 3, F1 = 2 * 3 / 10 = 0.6; against "a blue circle": "a", "circle" = 2,
    # F1 = 0.4. "a red square" vs "a blue circle": "a" only, F1 = 0.2. Means: circle 0.5,
    # square 0.4, blue circle 0.3.
    assert _f1("a red circle", "a red square") == 0.6
    assert consensus_caption(["a red square", "a red circle", "a blue circle"]) == "a red circle"


def test_repeated_ngrams_are_clipped_and_ties_go_to_the_first():
    # "a a a" has {"a": 3, "a a": 2}; "a" has {"a": 1}: clipped overlap 1, F1 = 2 * 1 / (5 + 1).
    assert abs(_f1("a a a", "a") - 2 / 6) < 1e-12
    assert consensus_caption(["x y", "p q", "x y z"]) == _reference_consensus(["x y", "p q", "x y z"])
    assert consensus_caption(["one two", "three four"]) == "one two"  # both score 0
    assert consensus_caption(["only"]) == "only"
    assert consensus_caption(["", "a b"]) == ""  # empty captions score 0, no division by zero


def test_consensus_matches_the_definition_on_random_caption_sets():
    rng = np.random.default_rng(0)
    words = ["a", "red", "blue", "circle", "square", "left", "of", "the", "and", "two"]
    for _ in range(200):
        n = int(rng.integers(2, 26))
        captions = [" ".join(rng.choice(words, size=int(rng.integers(1, 9))))
                    for _ in range(n)]
        captions += captions[: int(rng.integers(0, 3))]  # retrieved sets repeat captions
        assert consensus_caption(captions) == _reference_consensus(captions)
