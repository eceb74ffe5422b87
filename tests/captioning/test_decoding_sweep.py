"""The decoding sweep (LRCN Table 6): its grid, its table, and `python -m vcaption.evaluate --run DIR
--decoding-sweep` end to end on a tiny trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcaption.captioning import decoding_sweep
from vcaption.captioning.decoding_sweep import Strategy


def test_the_default_grid_is_lrcn_table_6():
    sweep = decoding_sweep.strategies()
    assert [s.name for s in sweep[:5]] == ["beam1", "beam2", "beam3", "beam5", "beam10"]
    assert [s.name for s in sweep[5:8]] == ["sample1_T1", "sample1_T1.5", "sample1_T2"]
    assert len(sweep) == 5 + 4 * 3 and sweep[-1].name == "sample100_T2"
    best = Strategy(num_samples=100, lrcn_t=1.5)  # LRCN's choice (§5, Table 7)
    assert best.describe() == {"num_samples": 100, "lrcn_T": 1.5, "temperature": pytest.approx(2 / 3)}
    assert Strategy(beam_size=3).describe() == {"beam_size": 3}
    for bad in (dict(), dict(beam_size=3, num_samples=5), dict(num_samples=5, lrcn_t=0.0)):
        with pytest.raises(ValueError):
            Strategy(**bad)


def test_markdown_table_shows_what_the_rows_have():
    table = {"command": "python -m vcaption.evaluate --run R --decoding-sweep", "split": "test", "images": 2,
             "strategies": {
                 "beam2": {"beam_size": 2, "Bleu_1": 0.5, "Bleu_4": 0.25, "METEOR": 0.2, "ROUGE_L": 0.4,
                           "CIDEr": 1.5, "diversity": {"copied_from_training": 0.5, "distinct_captions": 1.0,
                                                       "vocabulary_used": 7, "vocabulary_coverage": 0.25,
                                                       "distinct_1": 0.5, "distinct_2": 0.75}},
                 "sample10_T1.5": {"num_samples": 10, "lrcn_T": 1.5, "temperature": 2 / 3, "Bleu_1": 0.5,
                                   "Bleu_4": 0.125, "METEOR": 0.1, "ROUGE_L": 0.3, "CIDEr": float("nan"),
                                   "diversity": {"copied_from_training": 0.0, "distinct_captions": 0.5,
                                                 "vocabulary_used": 3, "vocabulary_coverage": 0.125,
                                                 "distinct_1": 1.0, "distinct_2": 1.0}}}}
    lines = decoding_sweep.markdown_table(table).splitlines()
    assert lines[0] == "`python -m vcaption.evaluate --run R --decoding-sweep` (test split, 2 images)"
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:4] == ["beam", "N", "LRCN T", "temperature"] and "CHAIR_s" not in header  # no scenes
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[4:]]
    assert rows[0]["beam"] == "2" and rows[0]["N"] == "-" and rows[0]["copied %"] == "50.0"
    assert rows[1]["temperature"] == "0.667" and rows[1]["LRCN T"] == "1.5" and rows[1]["CIDEr-D"] == "-"
    assert rows[1]["vocab"] == "3" and rows[1]["coverage %"] == "12.5" and rows[1]["distinct-2"] == "1.000"


@pytest.mark.slow
def test_sweep_of_a_trained_run_writes_what_its_results_files_rescore_to(shapes_records, shapes_world, tmp_path):
    from vcaption import evaluate, text, train
    from vcaption.captioning import evaluation
    from vcaption.metrics import caption as caption_metrics
    from vcaption.metrics import grounding
    from vcaption.runtime.task import run_preset
    from test_train import TINY  # same folder: pytest puts it on sys.path

    args = train.parse_args(["--data", str(shapes_records), "--epochs", "1", "--batch-size", "16", *TINY,
                             "--set", "train.baselines=False"])
    metrics = run_preset(train.config_from_args(args), str(tmp_path / "run"), verbose=0)
    training = evaluation.training_captions(str(shapes_records))
    assert len(training) > 100 and all(c == text.normalized_caption(c) for c in list(training)[:20])
    # The normal evaluation gives every system a diversity block: a recount of its results file.
    results = {str(r["image_id"]): r["caption"]
               for r in json.loads((tmp_path / "run" / "results_test.json").read_text())}
    references = {k: v for k, v in _references(shapes_records).items() if k in results}
    assert metrics["model"]["diversity"] == evaluation.caption_diversity(results, references, training)

    out = tmp_path / "sweep"
    scenes = str(shapes_world / "scenes.json")
    assert evaluate.main(["--run", str(tmp_path / "run"), "--decoding-sweep", "--beam-widths", "1", "3",
                          "--sample-sizes", "4", "--lrcn-temperatures", "1", "2", "--scenes", scenes,
                          "--output", str(out)]) == 0
    table = json.loads((out / "decoding_sweep_test.json").read_text())
    assert list(table["strategies"]) == ["beam1", "beam3", "sample4_T1", "sample4_T2"]
    assert table["images"] == len(results) and "--decoding-sweep" in table["command"]
    world = grounding.load_scenes(scenes)
    for name, row in table["strategies"].items():
        captions = {str(r["image_id"]): r["caption"] for r in json.loads((out / row["results"]).read_text())}
        assert row["results"] == f"results_test_{name}.json" and captions.keys() == results.keys()
        rescored = caption_metrics.score_captions(references, captions, spice=False)
        for metric in caption_metrics.CAPTION_METRICS:
            assert row[metric] == pytest.approx(rescored[metric], abs=1e-12), (name, metric)
        assert row["diversity"] == evaluation.caption_diversity(captions, references, training)
        assert row["grounding"] == grounding.grounding_scores(captions, *world)
    # The run's own beam search is one of the strategies: the same captions.
    if metrics["beam_size"] == 3:
        assert json.loads((out / "results_test_beam3.json").read_text()) == \
            json.loads((tmp_path / "run" / "results_test.json").read_text())
    assert table["strategies"]["sample4_T2"]["temperature"] == 0.5
    markdown = (out / "decoding_sweep_test.md").read_text()
    assert markdown.startswith("`python -m vcaption.evaluate --run ") and markdown.count("\n| ") == 5

    # Run again with one more temperature (as after an interruption): the rows already written
    # are kept, not decoded again, and only the new strategy is scored.
    table["strategies"]["beam1"]["decode_seconds"] = -1.0  # a mark a fresh decode would overwrite
    (out / "decoding_sweep_test.json").write_text(json.dumps(table))
    assert evaluate.main(["--run", str(tmp_path / "run"), "--decoding-sweep", "--beam-widths", "1", "3",
                          "--sample-sizes", "4", "--lrcn-temperatures", "1", "2", "1.5", "--scenes", scenes,
                          "--output", str(out)]) == 0
    resumed = json.loads((out / "decoding_sweep_test.json").read_text())
    assert list(resumed["strategies"]) == ["beam1", "beam3", "sample4_T1", "sample4_T2", "sample4_T1.5"]
    assert resumed["strategies"]["beam1"]["decode_seconds"] == -1.0
    assert resumed["strategies"]["sample4_T2"] == table["strategies"]["sample4_T2"]
    assert resumed["images"] == table["images"]


def _references(records) -> dict[str, list[str]]:
    from vcaption import data

    dataset = data.make_dataset(str(records), "test", "caption_eval", batch_size=64, blind=True)
    return {i.decode(): [r.decode() for r in refs] for batch in dataset
            for i, refs in zip(batch["image_id"].numpy(), batch["references"].to_list())}


@pytest.mark.slow
def test_sampling_is_reproducible_and_each_batch_draws_its_own(shapes_records):
    """Best-of-N sampling draws from a stateless seed folded with the batch index: the same batch
    twice draws the same, the same images as a different batch draw differently."""
    import tensorflow as tf

    from vcaption import config as config_lib
    from vcaption import presets
    from vcaption.captioning import task as captioning
    from test_train import TINY  # same folder: pytest puts it on sys.path

    cfg = config_lib.apply_overrides(presets.get_preset("lrcn_2f"), TINY[1::2])
    model = captioning.build_model(cfg, vocab_size=12, word_counts=None)
    sampler = Strategy(num_samples=1, lrcn_t=0.25).generator(model, max_length=8)  # T = 4: flat
    visual = tf.random.stateless_uniform([16, 32, 32, 3], seed=[1, 2], maxval=255.0)
    first, again, other = (sampler(visual, tf.constant(i, tf.int64)).ids.numpy() for i in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
