"""The VQA trainer end to end on the tiny built-in world: preparation through the Beam job, model and
both baselines in one table, results in the official format that the scorer CLI re-scores to the same
numbers, and an export that answers."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import tensorflow as tf

from vcaption import config as config_lib
from vcaption import presets
from vcaption import train
from vcaption.captioning import evaluation as evaluate
from vcaption.metrics import vqa as vqa_metrics


@pytest.mark.slow
def test_vqa_preset_trains_scores_baselines_and_exports(shapes_world, tmp_path, capsys):
    root = tmp_path / "shapes"
    root.mkdir()
    os.symlink(shapes_world, root / "world")  # the built-in world, already generated
    cfg = config_lib.apply_overrides(presets.get_preset("vqa_lstm_cnn"), [
        f"data.shapes_root={str(root)!r}", "data.image_size=16", "data.min_count=1",
        "model.image_size=16", "model.embedding_dim=8", "model.lstm_units=8", "model.common_dim=16",
        "model.hidden_units=16", "train.epochs=1", "train.batch_size=32",
        f"export.saved_models_dir={str(tmp_path / 'saved_models')!r}"])
    assert cfg.task == "vqa" and train.TASK_TRAINERS["vqa"] == "vcaption.vqa.task"
    output = tmp_path / "run"
    metrics = train.run(cfg, str(output), verbose=0)

    assert metrics == json.loads((output / "metrics.json").read_text())
    for row in (metrics["model"], metrics["baselines"]["question_only"],
                metrics["baselines"]["prior_per_question_type"]):
        assert 0.0 <= row["overall"] <= 1.0
        assert set(row["per_answer_type"]) == {"yes/no", "number", "other"}
        assert "how many" in row["per_question_type"]
    assert metrics["data"]["examples"]["test"] == metrics["model"]["questions"]
    printed = capsys.readouterr().out
    assert "question only (LSTM Q)" in printed and "prior per question type" in printed
    # The preset's image encoder is an object classifier's, trained first, inside the run.
    assert (output / "encoder_object_classifier" / "model.keras").exists()
    assert f"image encoder initialised from {output / 'encoder_object_classifier'}" in printed

    # The official-format results re-score to the same accuracy from the published JSON files.
    questions = shapes_world / "vqa" / "v2_OpenEnded_shapes_test_questions.json"
    annotations = shapes_world / "vqa" / "v2_shapes_test_annotations.json"
    rescored = tmp_path / "rescored.json"
    assert evaluate.main(["--task", "vqa", "--results", str(output / "results_test.json"),
                          "--questions", str(questions), "--annotations", str(annotations),
                          "--output", str(rescored)]) == 0
    assert json.loads(rescored.read_text())["overall"] == pytest.approx(metrics["model"]["overall"])

    # One official-format entry per test question.
    results = json.loads((output / "results_test.json").read_text())
    assert len(results) == metrics["model"]["questions"]
    assert all(set(r) == {"question_id", "answer"} for r in results)

    loaded = tf.saved_model.load(metrics["export"])
    jpeg = open(shapes_world / "images" / sorted(os.listdir(shapes_world / "images"))[0], "rb").read()
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([jpeg]),
                                                question=tf.constant(["how many shapes are there?"]))
    answers = (tmp_path / "shapes" / "records-vqa-16-top-answers-1000" / "answers.txt").read_text().split("\n")
    assert out["answers"].shape == (1, 5)
    assert {a.decode() for a in out["answers"].numpy()[0]} <= set(answers)
    assert all(vqa_metrics.normalize_answer(a) == a for a in answers if a)


def _source_run(path, shapes_images, shapes_seed=0):
    """A trained-run directory as `python -m vcaption.train` leaves it: config.json + model.keras."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"data": {
        "data_dir": None, "shapes_images": shapes_images, "shapes_seed": shapes_seed}}))
    (path / "model.keras").write_bytes(b"")
    return path


def test_encoder_source_refuses_an_encoder_trained_on_another_builtin_world(tmp_path):
    from vcaption.vqa import task as train_vqa

    cfg = presets.get_preset("vqa_lstm_cnn")  # 18,000 images, seed 0
    same = _source_run(tmp_path / "same", cfg.data.shapes_images)
    assert train_vqa.encoder_source(str(same), cfg, str(tmp_path / "out")) == str(same)
    assert train_vqa.encoder_source(str(same / "model.keras"), cfg, str(tmp_path / "out")) == str(
        same / "model.keras")
    # A bigger world shares this world's scenes but splits them anew: its training images include
    # this world's test images.
    bigger = _source_run(tmp_path / "bigger", 2 * cfg.data.shapes_images)
    with pytest.raises(ValueError, match="may be this run's test images"):
        train_vqa.encoder_source(str(bigger), cfg, str(tmp_path / "out"))
    reseeded = _source_run(tmp_path / "reseeded", cfg.data.shapes_images, shapes_seed=1)
    with pytest.raises(ValueError, match="seed 1"):
        train_vqa.encoder_source(str(reseeded), cfg, str(tmp_path / "out"))


def test_encoder_source_trains_a_named_preset_once_inside_the_run(tmp_path, monkeypatch):
    from vcaption.vqa import task as train_vqa

    cfg = config_lib.apply_overrides(presets.get_preset("vqa_lstm_cnn"),
                                     ["data.shapes_images=60", "data.shapes_seed=3", "model.image_size=16"])
    output = tmp_path / "vqa_run"
    trained = []

    def fake_run(source_cfg, run_dir, verbose=1):  # what the captioning trainer leaves behind
        trained.append(source_cfg)
        _source_run(pathlib.Path(run_dir), source_cfg.data.shapes_images, source_cfg.data.shapes_seed)

    monkeypatch.setattr(train, "run", fake_run)
    source = train_vqa.encoder_source("lrcn_2f", cfg, str(output))
    assert source == str(output / "encoder_lrcn_2f")
    (source_cfg,) = trained
    assert source_cfg.name == "lrcn_2f"
    assert (source_cfg.data.shapes_images, source_cfg.data.shapes_seed) == (60, 3)  # this world
    assert source_cfg.model_args["image_size"] == cfg.model_args["image_size"]  # this encoder
    assert not source_cfg.train.baselines and source_cfg.export.saved_models_dir == ""
    assert train_vqa.encoder_source("lrcn_2f", cfg, str(output)) == source  # reused, not retrained
    assert len(trained) == 1

    own_data = config_lib.apply_overrides(cfg, ["data.data_dir='/data/vqa-records'"])
    with pytest.raises(ValueError, match="give a trained run directory"):
        train_vqa.encoder_source("lrcn_2f", own_data, str(tmp_path / "other_run"))
