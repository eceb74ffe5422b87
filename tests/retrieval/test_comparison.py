"""The retrieval table's files: every figure of retrieval.json is what its saved matrix gives."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vcaption.retrieval import comparison


def _recompute(scores: np.ndarray, per_image: int = 5) -> dict:
    """R@1/5/10 and the median rank from a matrix, by loops over the definitions (ties against
    the model: a wrong candidate scoring the same as the right one is ranked above it)."""
    images, sentences = scores.shape
    annotation, search = [], []
    for i in range(images):
        own = range(i * per_image, (i + 1) * per_image)
        best = max(scores[i, j] for j in own)
        annotation.append(1 + sum(1 for j in range(sentences) if j // per_image != i and scores[i, j] >= best))
    for j in range(sentences):
        right = scores[j // per_image, j]
        search.append(1 + sum(1 for i in range(images) if i != j // per_image and scores[i, j] >= right))

    def metrics(ranks):
        ranks = sorted(ranks)
        middle = len(ranks) // 2
        median = ranks[middle] if len(ranks) % 2 else (ranks[middle - 1] + ranks[middle]) / 2
        return {**{f"R@{k}": sum(r <= k for r in ranks) / len(ranks) for k in (1, 5, 10)},
                "medr": float(int(median))}

    return {"i2t": metrics(annotation), "t2i": metrics(search)}


def test_retrieval_json_is_an_independent_recomputation_of_the_saved_matrices(tmp_path):
    rng = np.random.default_rng(0)
    images = 13
    # Integer scores in a small range: many ties, among own and wrong candidates alike.
    tied = rng.integers(0, 4, size=(images, 5 * images)).astype(np.float64)
    constant = np.zeros((images, 5 * images))  # all ties: the worst ranks, never R@1 = 1
    perfect = np.kron(np.eye(images), np.ones((1, 5))) * 3 + rng.normal(0, 0.1, (images, 5 * images))
    texts = [f"sentence {j // 5} {j % 5}" for j in range(5 * images)]
    texts[7] = texts[12] = "a red circle"  # a duplicate across images 1 and 2
    ids = [f"img{i}" for i in range(images)]
    table = comparison.write_outputs(str(tmp_path), {"tied": tied, "constant": constant, "perfect": perfect},
                                     texts, ids)
    on_disk = json.loads((tmp_path / "retrieval.json").read_text())
    assert on_disk == json.loads(json.dumps(table))
    assert set(on_disk) == {"tied", "constant", "perfect", "upper_bound"}
    for system in ("tied", "constant", "perfect"):
        row = on_disk[system]
        assert row["scores"] == f"{system}_scores_test.npy"
        saved = np.load(tmp_path / row["scores"])
        want = _recompute(saved)
        for side in ("i2t", "t2i"):
            assert set(row[side]) == {"R@1", "R@5", "R@10", "medr"}
            for key, value in want[side].items():
                assert row[side][key] == pytest.approx(value), (system, side, key)
    assert on_disk["constant"]["i2t"]["R@1"] == 0.0 and on_disk["constant"]["t2i"]["medr"] == images
    assert on_disk["perfect"]["i2t"]["R@1"] == 1.0 and on_disk["perfect"]["t2i"]["R@1"] == 1.0
    assert on_disk["upper_bound"]["scores"] is None
    # The duplicate costs one of the two sentences its first place in image search.
    assert on_disk["upper_bound"]["t2i"]["R@1"] == pytest.approx(1 - 1 / (5 * images))
    columns = json.loads((tmp_path / "texts_test.json").read_text())
    assert [c["text"] for c in columns] == texts
    assert [c["image"] for c in columns] == [j // 5 for j in range(5 * images)]
    assert columns[7]["image_id"] == "img1"
    markdown = comparison.markdown_table(table, "python -m vcaption.compare --task retrieval")
    assert "python -m vcaption.compare --task retrieval" in markdown and markdown.count("\n| ") == 5


def test_bad_matrices_are_refused(tmp_path):
    texts = ["t"] * 10
    with pytest.raises(ValueError, match="3 rows for 2 images"):
        comparison.write_outputs(str(tmp_path), {"x": np.zeros((3, 15))}, texts, ["a", "b"])
    with pytest.raises(ValueError, match="x: 2 images need 10 sentence columns"):
        comparison.write_outputs(str(tmp_path), {"x": np.zeros((2, 9))}, texts, ["a", "b"])
    with pytest.raises(ValueError, match="NaN"):
        comparison.write_outputs(str(tmp_path), {"x": np.full((2, 10), np.nan)}, texts, ["a", "b"])
    assert os.listdir(tmp_path) == []  # nothing written before every matrix is checked
