"""End to end: the ranker task on the tiny built-in world, the evaluate CLIs on its outputs, its export."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def region_records(shapes_world, tmp_path_factory):
    """The tiny world preprocessed from its COCO files, so records carry the object boxes."""
    from beam_jobs import preprocess

    out = tmp_path_factory.mktemp("region_records")
    preprocess.run(["--format", "coco", "--input", str(shapes_world / "annotations"), "--output", str(out),
                    "--image-size", "32", "--min-count", "1"])
    return out


@pytest.mark.slow  # the module fixture runs the Beam preprocess job
def test_region_records_carry_whole_image_then_object_boxes(region_records, shapes_world):
    from vcaption.retrieval import data as ranker_data
    from vcaption.retrieval import alignment_metrics

    scenes = alignment_metrics.load_scenes(str(shapes_world / "scenes.json"))
    batch = next(iter(ranker_data.eval_dataset(str(region_records), "train", batch_size=8, image_size=32)))
    for image_id, boxes in zip(batch["image_id"].numpy(), batch["boxes"].numpy()):
        objects = scenes[image_id.decode()]["objects"]
        np.testing.assert_array_equal(boxes[0], [0, 0, 1, 1])
        assert len(alignment_metrics.real_regions(boxes)) == 1 + len(objects)
        # Every object finds its own box (region k + 1 for object k).
        assert alignment_metrics.object_regions(objects, boxes, 64) == {k: k + 1 for k in range(len(objects))}


@pytest.mark.slow
def test_train_ranker_end_to_end(region_records, shapes_world, tmp_path, capsys):
    from vcaption import presets
    from vcaption import evaluate
    from vcaption.runtime.task import run_preset

    cfg = presets.get_preset("karpathy_ranker")
    cfg = dataclasses.replace(
        cfg, model_args={**cfg.model_args, "hidden_units": 16, "embedding_dim": 16, "crop_size": 16,
                         "feature_dim": 16, "filters": (8, 16)},
        task_args={**cfg.task_args, "scenes": str(shapes_world / "scenes.json"), "val_images": 10},
        data=dataclasses.replace(cfg.data, data_dir=str(region_records), image_size=32),
        train=dataclasses.replace(cfg.train, epochs=2, batch_size=8, checkpoint_every=6))
    output = tmp_path / "run"
    result = run_preset(cfg, str(output), verbose=0)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["retrieval"] == result["retrieval"]
    # The keys of the trainer before the shared runtime: no export unless asked for.
    assert set(metrics) == {"preset", "split", "data_dir", "training", "test_images", "skipped_images",
                            "retrieval", "alignment", "evaluation_seconds", "profile"}
    assert set(metrics["training"]) == {"steps", "seconds", "best_val_recall_sum"}
    # Kept at the best interval by validation recall, logged every checkpoint interval.
    assert metrics["training"]["best_val_recall_sum"] is not None
    assert "val_recall_sum" in (output / "history.csv").read_text().splitlines()[0]
    model_row = metrics["retrieval"]["1K"]["model"]
    bound = metrics["retrieval"]["1K"]["upper bound (duplicates)"]
    images = metrics["test_images"]
    assert model_row["images"] == images and model_row["folds"] == 1
    for side in ("annotation", "search"):
        assert 0.0 <= model_row[side]["R@1"] <= bound[side]["R@1"] <= 1.0
    scores = np.load(output / "scores_test.npy")
    assert scores.shape == (images, 5 * images)
    # The saved score matrix re-scores to the same table through the evaluate CLI.
    capsys.readouterr()
    assert evaluate.main(["--task", "retrieval", "--scores", str(output / "scores_test.npy"),
                          "--texts", str(output / "texts_test.json"), "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["1K"]["model"] == model_row
    assert "Image Annotation" in capsys.readouterr().out
    # The alignment CLI on the saved model gives the same β and accuracy as the run.
    assert evaluate.main(["--task", "alignment", "--model", str(output / "model.keras"),
                          "--data", str(region_records), "--scenes", str(shapes_world / "scenes.json"),
                          "--val-images", "10", "--output", str(tmp_path / "align")]) == 0
    cli_alignment = json.loads((tmp_path / "align" / "alignment_metrics.json").read_text())
    assert cli_alignment["beta"] == pytest.approx(metrics["alignment"]["beta"])
    assert cli_alignment["test"]["accuracy"] == pytest.approx(metrics["alignment"]["test"]["accuracy"])
    # Alignment: a beta from the grid, accuracies in [0, 1], a Visual Genome region file and a PNG.
    align = metrics["alignment"]
    assert align["test"]["words"] > 0 and 0.0 <= align["test"]["accuracy"] <= 1.0
    regions = json.loads((output / "alignments_test.json").read_text())
    assert len(regions) == images
    assert {"region_id", "image_id", "x", "y", "width", "height", "phrase"} <= set(regions[0]["regions"][0])
    assert (output / "alignment_test.png").stat().st_size > 1000
    # The run exports from its directory alone: its config (max_length), data/ copy (vocabulary)
    # and model.keras, as `python -m vcaption.export --run` does.
    import tensorflow as tf

    from vcaption.export import export_run

    saved = export_run(str(output), str(tmp_path / "saved"))
    assert saved == str(tmp_path / "saved" / "karpathy_ranker" / "1")
    assert {"embed_image", "embed_sentence", "score", "align"} <= set(tf.saved_model.load(saved).signatures)
