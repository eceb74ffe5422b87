"""Self-critical fine-tuning: its CIDEr-D reward, its baseline, and the stage itself on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from vcaption import train
from vcaption.captioning import self_critical
from vcaption.captioning import task as captioning
from vcaption.datasets import shapes
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory


def test_cider_d_equals_pycocoevalcap_with_the_scored_set_as_corpus():
    rng = np.random.default_rng(3)
    references, candidates = {}, {}
    for index in range(40):
        captions = shapes.scene_captions(shapes.sample_scene(rng), rng)
        references[str(index)] = captions[1:]
        # half the candidates are references of another image, some are cut short
        other = shapes.scene_captions(shapes.sample_scene(rng), rng)[0]
        candidates[str(index)] = captions[0] if index % 2 else " ".join(other.split()[: 3 + index % 7])
    expected_mean, expected = Cider().compute_score(references, {k: [v] for k, v in candidates.items()})
    cider = self_critical.CiderD(references[k] for k in references)
    ours = [cider.score(candidates[k], cider.references(references[k])) for k in references]
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12)
    assert np.mean(ours) == pytest.approx(expected_mean)
    assert len(set(np.round(ours, 6))) > 20  # the scores differ: the comparison means something


def test_cider_d_keeps_its_corpus_document_frequencies():
    cider = self_critical.CiderD([["a red circle"], ["a red square"], ["a blue square"]])
    references = cider.references(["a red circle"])
    # "red" is in 2 of 3 corpus images, "circle" in 1: scoring other images does not change that
    before = cider.score("a red circle", references)
    cider.score("a blue square", cider.references(["a blue square"]))
    assert cider.score("a red circle", references) == before > cider.score("a red square", references) > 0
    with pytest.raises(ValueError, match="non-empty corpus"):
        self_critical.CiderD([])


def test_each_sample_is_judged_against_the_mean_of_the_others():
    rewards = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    advantages = self_critical.advantages(rewards)
    np.testing.assert_allclose(advantages, [[-1.5, 0.0, 1.5], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(advantages.sum(axis=1), 0.0, atol=1e-12)  # no drift in log p overall
    with pytest.raises(ValueError, match="at least 2 samples"):
        self_critical.advantages(np.ones((2, 1)))


def test_fine_tuning_moves_the_weights_and_a_finished_one_is_loaded(shapes_records, tmp_path):
    from test_train import TINY  # same folder: pytest puts it on sys.path

    cfg = train.config_from_args(train.parse_args([
        "--data", str(shapes_records), "--batch-size", "16", *TINY, "--set", "train.self_critical_steps=3",
        "--set", "train.self_critical_images=4", "--set", "train.self_critical_samples=3"]))
    data = PreparedData(str(shapes_records))
    vocab_size = data.vocabulary().size
    run = RunDirectory(str(tmp_path / "run"))
    model = captioning.build_model(cfg, vocab_size, None)
    before = [w.copy() for w in model.get_weights()]
    summary = self_critical.fine_tune(model, data, cfg, run, verbose=0)
    assert summary["steps"] == 3 and summary["images_per_step"] == 4 and summary["samples_per_image"] == 3
    assert 0.0 <= summary["first_50_mean_reward"] and summary["seconds"] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # the same run again: the fine-tuned weights are loaded, not trained further
    again = captioning.build_model(cfg, vocab_size, None)
    assert self_critical.fine_tune(again, data, cfg, run, verbose=0) == summary
    for mine, theirs in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
