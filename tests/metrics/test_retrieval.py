"""Retrieval metrics against a direct reference computation (explicit sorting), ties included."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcaption.metrics import retrieval

K = 5  # sentences per image


def _reference_annotation_ranks(scores):
    """Sorts every image's sentences, wrong ones first among equal scores (pessimistic ties)."""
    ranks = []
    for i, row in enumerate(scores):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j // K == i))
        ranks.append(next(pos for pos, j in enumerate(order) if j // K == i) + 1)
    return np.array(ranks)


def _reference_search_ranks(scores):
    ranks = []
    for j in range(scores.shape[1]):
        order = sorted(range(scores.shape[0]), key=lambda i: (-scores[i, j], i == j // K))
        ranks.append(order.index(j // K) + 1)
    return np.array(ranks)


def _reference_metrics(ranks):
    return {"R@1": np.mean(ranks <= 1), "R@5": np.mean(ranks <= 5), "R@10": np.mean(ranks <= 10),
            "median_rank": float(int(np.median(ranks)))}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranks_equal_the_sorting_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    images = 30
    # Integer scores in a small range: many ties, within and across images.
    scores = rng.integers(0, 4, size=(images, images * K)).astype(np.float32)
    np.testing.assert_array_equal(retrieval.annotation_ranks(scores), _reference_annotation_ranks(scores))
    np.testing.assert_array_equal(retrieval.search_ranks(scores), _reference_search_ranks(scores))
    result = retrieval.evaluate_retrieval(scores, "1K")
    for side, ranks in (("annotation", _reference_annotation_ranks(scores)),
                        ("search", _reference_search_ranks(scores))):
        for key, value in _reference_metrics(ranks).items():
            assert result[side][key] == pytest.approx(value)
    assert result["images"] == images and result["folds"] == 1


def test_ties_count_against_the_model():
    constant = np.zeros((4, 4 * K))
    # Every wrong candidate ties with the right one: worst rank, not rank 1.
    assert retrieval.annotation_ranks(constant).tolist() == [1 + 3 * K] * 4
    assert retrieval.search_ranks(constant).tolist() == [4] * (4 * K)
    perfect = np.kron(np.eye(4), np.ones((1, K)))
    assert retrieval.evaluate_retrieval(perfect)["annotation"]["R@1"] == 1.0
    assert retrieval.evaluate_retrieval(perfect)["search"]["median_rank"] == 1.0


def test_1k_protocol_averages_folds_and_5k_uses_5000_images(monkeypatch):
    # The protocols at 1/50 scale (folds of 20, "5K" = 100 images) keep the test small.
    monkeypatch.setattr(retrieval, "FOLD_SIZE", 20)
    monkeypatch.setattr(retrieval, "FIVE_K", 100)
    rng = np.random.default_rng(3)
    images = 100
    scores = rng.normal(size=(images, images * K)).astype(np.float32)
    owner = np.arange(images * K) // K
    scores[owner, np.arange(images * K)] += rng.uniform(0, 4, size=images * K)
    one_k = retrieval.evaluate_retrieval(scores, "1K")
    folds = [retrieval.evaluate_retrieval(scores[f * 20:(f + 1) * 20, f * 100:(f + 1) * 100], "1K")
             for f in range(5)]
    assert one_k["folds"] == 5 and one_k["images"] == 20
    for side in ("annotation", "search"):
        for key in ("R@1", "R@5", "R@10", "median_rank"):
            assert one_k[side][key] == pytest.approx(np.mean([f[side][key] for f in folds]))
    five_k = retrieval.evaluate_retrieval(scores, "5K")
    assert five_k["folds"] == 1 and five_k["images"] == 100
    assert five_k["annotation"]["R@1"] == pytest.approx(
        _reference_metrics(_reference_annotation_ranks(scores))["R@1"])
    # More distractors: the 5K task is harder than the 1K one.
    assert five_k["search"]["R@1"] < one_k["search"]["R@1"]
    assert list(retrieval.retrieval_table(scores)) == ["1K", "5K"]
    assert list(retrieval.retrieval_table(scores[:99, :495])) == ["1K"]
    with pytest.raises(ValueError, match="5K protocol needs"):
        retrieval.evaluate_retrieval(scores[:50, :250], "5K")


def test_bad_matrices_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="need 15 sentence columns"):
        retrieval.check_scores(np.zeros((3, 14)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval.check_scores(np.full((1, 5), np.nan))


def test_duplicate_upper_bound_matches_brute_force_over_text_scorers():
    # 3 images; image 0 and image 1 share every text, image 2 is unique.
    texts = ["a"] * 5 + ["a"] * 4 + ["b"] + ["c"] * 5
    ann = retrieval.best_annotation_ranks(texts)
    # Image 0 owns only "a", which 4 sentences of image 1 also read: best rank 5.
    # Image 1 can put its "b" first: rank 1. Image 2: rank 1.
    assert ann.tolist() == [5, 1, 1]
    search = retrieval.best_search_ranks(texts)
    # "a" ranks image 0 (5 sentences) above image 1 (4): image 1's "a" sentences get rank 2.
    assert search.tolist() == [1] * 5 + [2] * 4 + [1] + [1] * 5
    # Any text-based scorer does no better: scores that are a function of (image, text).
    rng = np.random.default_rng(0)
    vocab = sorted(set(texts))
    for _ in range(50):
        table = rng.integers(0, 3, size=(3, len(vocab)))
        scores = np.array([[table[i, vocab.index(t)] for t in texts] for i in range(3)], float)
        assert np.all(retrieval.annotation_ranks(scores) >= ann)
        assert np.mean(retrieval.search_ranks(scores) <= 1) <= np.mean(search <= 1)
    bound = retrieval.duplicate_upper_bound(texts)
    assert bound["annotation"]["R@1"] == pytest.approx(2 / 3)
    assert bound["search"]["R@1"] == pytest.approx(11 / 15)


def test_cli_prints_the_table(tmp_path, capsys):
    from vcaption import evaluate

    scores = np.kron(np.eye(20), np.ones((1, K)))
    scores[0, :] = 0  # image 0 ties with everything: rank 1 + 19 * 5 for annotation
    path = tmp_path / "S.npy"
    np.save(path, scores)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps([f"s{j}" for j in range(100)]))
    out = tmp_path / "m.json"
    assert evaluate.main(["--task", "retrieval", "--scores", str(path), "--texts", str(texts),
                          "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Image Annotation" in printed and "upper bound" in printed
    metrics = json.loads(out.read_text())["1K"]
    assert metrics["model"]["annotation"]["R@1"] == pytest.approx(19 / 20)
    assert metrics["upper bound (duplicates)"]["annotation"]["R@1"] == 1.0
    with pytest.raises(SystemExit):
        evaluate.main(["--task", "retrieval", "--scores", str(path), "--sentences-per-image", "3"])
