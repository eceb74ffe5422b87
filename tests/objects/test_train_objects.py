"""The object classifier (the VQA encoder's pretraining): label targets built in graph from region
phrases and boxes, the ranking metrics on worked cases, and the preset end to end on the tiny world."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from vcaption import config as config_lib
from vcaption import export as export_cli
from vcaption import presets
from vcaption.objects.evaluation import average_precision, classification_metrics
from vcaption.objects.labels import ENDING_WORDS, LabelVocabulary, make_dataset, phrase_and_endings
from vcaption.objects.task import ObjectsTask
from vcaption.runtime import task as runtime_task
from vcaption.runtime.prepared_data import PreparedData


def test_targets_name_each_known_phrase_anywhere_and_in_the_cell_of_its_box_centre():
    labels = LabelVocabulary(["small red circle", "large blue square"])
    assert labels.size == 20
    names = labels.names()
    assert names[0] == "small red circle" and names[1] == "small red circle @ top left"
    assert names[10 + 1 + 5] == "large blue square @ right"
    boxes = tf.constant([[0.0, 0.0, 0.2, 0.2],     # centre (0.1, 0.1): top left
                         [0.4, 0.7, 0.6, 0.9],     # centre (0.5, 0.8): right
                         [0.9, 0.9, 1.0, 1.0],     # centre (0.95, 0.95): bottom right
                         [0.5, 0.5, 0.5, 0.5],     # unknown phrase: no label
                         [0.0, 0.0, 0.2, 0.2]])    # the first object again: counted once
    phrases = tf.constant(["Small red circle", "large  blue square.", "small red circle",
                           "green diamond", "small red circle"])
    targets = labels.targets(phrases, boxes).numpy()
    expected = np.zeros(20, np.float32)
    expected[[0, 0 + 1 + 0, 0 + 1 + 8]] = 1  # small red circle: anywhere, top left, bottom right
    expected[[10, 10 + 1 + 5]] = 1  # large blue square: anywhere, right
    np.testing.assert_array_equal(targets, expected)
    # An image without regions has no labels.
    empty = labels.targets(tf.constant([], tf.string), tf.zeros([0, 4])).numpy()
    assert not empty.any()
    np.testing.assert_array_equal(labels.anywhere(), [0, 10])

    # A phrase's endings are labels of their own: "red circle" and "circle" of "small red circle".
    labels = LabelVocabulary(["red circle", "circle", "square"])
    targets = labels.targets(tf.constant(["small red circle", "large blue square"]),
                             tf.constant([[0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6]])).numpy()
    assert {labels.names()[i] for i in np.flatnonzero(targets)} == {
        "red circle", "red circle @ top left", "circle", "circle @ top left",
        "square", "square @ center"}


def test_phrase_and_endings_are_the_normalized_phrase_and_its_last_words():
    rows = phrase_and_endings(tf.constant(["Small red Circle!", "circle", "the clock is green"])).numpy()
    assert [[w.decode() for w in row] for row in rows] == [
        ["small red circle", "circle", "red circle", "small red circle"],
        ["circle", "circle", "circle", "circle"],
        ["the clock is green", "green", "is green", "clock is green"]]


def test_label_vocabulary_from_records_ranks_phrases_and_endings_and_counts_regions_left_out(tmp_path):
    from vcaption import records

    images = [["small red circle", "large red circle"], ["small red circle", "blue square"],
              ["tiny green star"]]
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001.tfrecord")) as writer:
        for i, phrases in enumerate(images):
            writer.write(records.encode_caption_example(
                str(i), [], [], image_jpeg=b"", region_phrases=phrases,
                region_boxes=[[0.0, 0.0, 0.1, 0.1]] * len(phrases)))
    labels, stats = LabelVocabulary.from_records(PreparedData(str(tmp_path)), max_phrases=3, min_count=2)
    # Regions per candidate: circle 3, red circle 3, small red circle 2; the rest once.
    assert labels.phrases == ["circle", "red circle", "small red circle"]
    # Every region but "blue square" and "tiny green star" has a label among its endings.
    assert stats == {"regions": 5, "regions_outside_labels": 2}
    labels, _ = LabelVocabulary.from_records(PreparedData(str(tmp_path)), max_phrases=2, min_count=1)
    assert labels.phrases == ["circle", "red circle"]  # ties at 3 regions: alphabetical
    with pytest.raises(ValueError, match="no region phrase"):
        LabelVocabulary.from_records(PreparedData(str(tmp_path)), max_phrases=10, min_count=4)


def test_average_precision_worked_cases():
    # Ranked: pos, neg, pos -> precisions at the hits 1/1 and 2/3.
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.5, 0.9]), np.array([0, 0, 1])) == 1.0
    assert average_precision(np.array([0.9, 0.5, 0.1]), np.array([0, 0, 1])) == pytest.approx(1 / 3)
    # Ties are ranked pessimistically: equal scores give the positive rate, whatever the order.
    assert average_precision(np.full(4, 0.3), np.array([1, 0, 0, 0])) == 0.25
    assert average_precision(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2)
    assert np.isnan(average_precision(np.array([0.5, 0.1]), np.array([0, 0])))


def test_classification_metrics_exact_set_and_micro_f1():
    targets = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    predicted = np.array([[True, False, True], [True, True, False]])
    scores = np.where(predicted, 1.0, -1.0)
    m = classification_metrics(scores, targets, predicted)
    assert m["exact_set_accuracy"] == 0.5  # the second image has one label too many
    assert m["micro_f1"] == pytest.approx(2 * 3 / (4 + 3))  # 3 true positives, 4 predicted, 3 true
    # Label 0: ranked [img0 (pos), img1 (neg)] tie at 1.0 -> 1/2; labels 1 and 2: ranked first -> 1.
    assert m["mAP"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["labels_with_positives"] == 3


@pytest.mark.slow
def test_object_classifier_preset_trains_scores_and_its_encoder_loads(shapes_world, tmp_path, capsys):
    from vcaption import encoders

    root = tmp_path / "shapes"
    root.mkdir()
    os.symlink(shapes_world, root / "world")
    cfg = config_lib.apply_overrides(presets.get_preset("object_classifier"), [
        f"data.shapes_root={str(root)!r}", "data.image_size=16", "data.min_count=1",
        "model.image_size=16", "train.epochs=2", "train.batch_size=16"])
    assert isinstance(runtime_task.get_task(cfg.task), ObjectsTask)
    output = tmp_path / "run"
    metrics = runtime_task.run_preset(cfg, str(output), verbose=0)
    assert metrics == json.loads((output / "metrics.json").read_text())
    # metrics.json as the trainer wrote it before the move to the runtime: no "export" (there is none);
    # and the run's profile (seconds per phase) that every run writes.
    assert set(metrics) == {"preset", "split", "data_dir", "labels", "phrases", "data", "training",
                            "model", "baselines", "profile"}
    assert {"data", "train object_classifier", "evaluate"} <= set(metrics["profile"])
    assert set(metrics["training"]) == {"steps", "seconds", "best_val_loss"}
    with pytest.raises(ValueError, match="no SavedModel export"):
        export_cli.export_run(str(output), str(tmp_path / "exports"))

    # Labels: every phrase of the world's training regions and its endings (min count 1), 10 each.
    regions = json.loads((shapes_world / "visual_genome" / "region_descriptions.json").read_text())
    splits = json.loads((shapes_world / "visual_genome" / "densecap_splits.json").read_text())
    train_ids = set(splits["train"])
    train_phrases = [r["phrase"] for image in regions if image["id"] in train_ids for r in image["regions"]]
    expected = {" ".join(p.split()[-k:]) for p in train_phrases for k in range(1, ENDING_WORDS + 1)}
    names = (output / "labels.txt").read_text().splitlines()
    assert len(names) == metrics["labels"] == 10 * len(expected | set(train_phrases))
    assert set(names[::10]) == expected | set(train_phrases)
    assert {"circle", "square"} <= set(names[::10])
    assert metrics["data"]["regions"] == len(train_phrases) and metrics["data"]["regions_outside_labels"] == 0

    # The in-graph targets of the test images say exactly which phrases the JSON file gives them.
    labels = LabelVocabulary(names[::10])
    prepared = PreparedData(metrics["data_dir"])
    by_id = {str(image["id"]): {r["phrase"] for r in image["regions"]} for image in regions}
    whole = [i for i, p in enumerate(labels.phrases) if len(p.split()) == 3]  # the world's phrases
    from vcaption import data, records
    ids = [p["image_id"].decode() for p in data.read_records(prepared.split_pattern("test"), False).map(
        records.parse_caption_example).as_numpy_iterator()]  # the order make_dataset reads them in
    targets = np.concatenate([y for _, y in make_dataset(prepared, "test", labels, 16, 8)
                              .as_numpy_iterator()])
    assert len(ids) == len(targets) == metrics["data"]["examples"]["test"]
    for image_id, row in zip(ids, targets):
        known = by_id[image_id] & set(labels.phrases)  # a phrase seen only in test is no label
        shown = {labels.phrases[i] for i in whole if row[labels.anywhere()[i]]}
        assert shown == known
        shapes = {p.split()[-1] for p in by_id[image_id]}
        assert {labels.phrases[i] for i in np.flatnonzero(row[labels.anywhere()])
                if len(labels.phrases[i].split()) == 1} == shapes

    for row in (metrics["model"], metrics["baselines"]["label_prior"]):
        assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["anywhere"]["exact_set_accuracy"] <= 1.0
    # The prior scores every image alike: its average precision is each label's positive rate.
    positive_rate = targets.mean(axis=0)
    assert metrics["baselines"]["label_prior"]["mAP"] == pytest.approx(
        positive_rate[positive_rate > 0].mean())
    printed = capsys.readouterr().out
    assert "label prior" in printed and "no SavedModel export" in printed

    # What the run is for: its encoder loads into a fresh encoder of the same architecture.
    encoder = encoders.build_encoder("small_cnn", image_size=16)
    encoders.load_encoder_weights(encoder, str(output))
    import keras
    trained = keras.saving.load_model(str(output / "model.keras"))
    for loaded, saved in zip(encoder.get_weights(), trained.encoder.get_weights()):
        np.testing.assert_array_equal(loaded, saved)
