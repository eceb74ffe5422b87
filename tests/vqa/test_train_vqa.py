"""The VQA task end to end on the tiny built-in world: preparation through the Beam job, model and
both baselines in one table, metrics.json with the same keys as before the move to the runtime,
results in the official format that the scorer CLI re-scores to the same numbers, an export that
answers, and a re-export of the run by `python -m vcaption.export` after its data is gone."""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest
import tensorflow as tf

from vcaption import config as config_lib
from vcaption import evaluate
from vcaption import export as export_cli
from vcaption import presets
from vcaption.metrics import vqa as vqa_metrics
from vcaption.runtime import task as runtime_task
from vcaption.vqa import pretrained_encoder
from vcaption.vqa.task import VQATask

# metrics.json as the VQA trainer wrote it before the move to the runtime ("ratio_to_question_only"
# only when the question-only baseline answers something right; "export" only when exported).
METRICS_KEYS = {"preset", "split", "data_dir", "answers", "data", "training", "baselines", "model", "seconds",
                "profile"}


@pytest.mark.slow
def test_vqa_preset_trains_scores_baselines_and_exports(shapes_world, tmp_path, capsys, monkeypatch):
    root = tmp_path / "shapes"
    root.mkdir()
    os.symlink(shapes_world, root / "world")  # the built-in world, already generated
    cfg = config_lib.apply_overrides(presets.get_preset("vqa_lstm_cnn"), [
        f"data.shapes_root={str(root)!r}", "data.image_size=16", "data.min_count=1",
        "model.image_size=16", "model.embedding_dim=8", "model.lstm_units=8", "model.common_dim=16",
        "model.hidden_units=16", "train.epochs=1", "train.batch_size=32",
        f"export.saved_models_dir={str(tmp_path / 'saved_models')!r}"])
    assert cfg.task == "vqa" and isinstance(runtime_task.get_task(cfg.task), VQATask)
    output = tmp_path / "run"
    metrics = runtime_task.run_preset(cfg, str(output), verbose=0)

    assert metrics == json.loads((output / "metrics.json").read_text())
    assert set(metrics) - {"ratio_to_question_only"} == METRICS_KEYS | {"export"}
    assert set(metrics["training"]) == {"steps", "seconds", "best_val_vqa_accuracy"}
    assert set(metrics["baselines"]) == {"question_only", "question_only_training", "prior_per_question_type"}
    assert metrics["baselines"]["question_only_training"].keys() == metrics["training"].keys()
    assert ("ratio_to_question_only" in metrics) == (metrics["baselines"]["question_only"]["overall"] > 0)
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
    records_dir = tmp_path / "shapes" / "records-vqa-16-top-answers-1000"
    answers = (records_dir / "answers.txt").read_text().split("\n")
    assert out["answers"].shape == (1, 5)
    assert {a.decode() for a in out["answers"].numpy()[0]} <= set(answers)
    assert all(vqa_metrics.normalize_answer(a) == a for a in answers if a)

    # The run re-exports on its own: from another working directory, its preprocessing output gone.
    shutil.rmtree(records_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert export_cli.main(["--run", str(output), "--output", "exports", "--top-k", "3"]) == 0
    again = tf.saved_model.load(str(elsewhere / "exports" / "vqa_lstm_cnn" / "1"))
    out = again.signatures["serving_default"](image_bytes=tf.constant([jpeg]),
                                              question=tf.constant(["how many shapes are there?"]))
    assert out["answers"].shape == (1, 3)
    assert {a.decode() for a in out["answers"].numpy()[0]} <= set(answers)


def _source_run(path, shapes_images, shapes_seed=0):
    """A trained-run directory as `python -m vcaption.train` leaves it: config.json + model.keras."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"data": {
        "data_dir": None, "shapes_images": shapes_images, "shapes_seed": shapes_seed}}))
    (path / "model.keras").write_bytes(b"")
    return path


def test_encoder_source_refuses_an_encoder_trained_on_another_builtin_world(tmp_path):
    cfg = presets.get_preset("vqa_lstm_cnn")  # 18,000 images, seed 0
    same = _source_run(tmp_path / "same", cfg.data.shapes_images)
    assert pretrained_encoder.encoder_source(str(same), cfg, str(tmp_path / "out")) == str(same)
    assert pretrained_encoder.encoder_source(str(same / "model.keras"), cfg, str(tmp_path / "out")) == str(
        same / "model.keras")
    # A bigger world shares this world's scenes but splits them anew: its training images include
    # this world's test images.
    bigger = _source_run(tmp_path / "bigger", 2 * cfg.data.shapes_images)
    with pytest.raises(ValueError, match="may be this run's test images"):
        pretrained_encoder.encoder_source(str(bigger), cfg, str(tmp_path / "out"))
    reseeded = _source_run(tmp_path / "reseeded", cfg.data.shapes_images, shapes_seed=1)
    with pytest.raises(ValueError, match="seed 1"):
        pretrained_encoder.encoder_source(str(reseeded), cfg, str(tmp_path / "out"))


def test_encoder_source_trains_a_named_preset_once_inside_the_run(tmp_path, monkeypatch):
    cfg = config_lib.apply_overrides(presets.get_preset("vqa_lstm_cnn"),
                                     ["data.shapes_images=60", "data.shapes_seed=3", "model.image_size=16"])
    output = tmp_path / "vqa_run"
    trained = []

    def fake_run(source_cfg, run_dir, verbose=1):  # what the source preset's run leaves behind
        trained.append(source_cfg)
        _source_run(pathlib.Path(run_dir), source_cfg.data.shapes_images, source_cfg.data.shapes_seed)

    monkeypatch.setattr(runtime_task, "run_preset", fake_run)
    source = pretrained_encoder.encoder_source("lrcn_2f", cfg, str(output))
    assert source == str(output / "encoder_lrcn_2f")
    (source_cfg,) = trained
    assert source_cfg.name == "lrcn_2f"
    assert (source_cfg.data.shapes_images, source_cfg.data.shapes_seed) == (60, 3)  # this world
    assert source_cfg.model_args["image_size"] == cfg.model_args["image_size"]  # this encoder
    assert not source_cfg.train.baselines and source_cfg.export.saved_models_dir == ""
    assert pretrained_encoder.encoder_source("lrcn_2f", cfg, str(output)) == source  # reused, not retrained
    assert len(trained) == 1

    own_data = config_lib.apply_overrides(cfg, ["data.data_dir='/data/vqa-records'"])
    with pytest.raises(ValueError, match="give a trained run directory"):
        pretrained_encoder.encoder_source("lrcn_2f", own_data, str(tmp_path / "other_run"))


def test_the_vqa_family_imports_no_other_family():
    """VQA reaches the object classifier's run through the runtime (`run_preset`), not its code."""
    import ast

    import vcaption
    from vcaption import registry

    families = {module.split(".")[1] for module in registry.MODELS.values()} - {"vqa"}
    assert "objects" in families
    package = pathlib.Path(vcaption.__file__).parent
    for source in sorted((package / "vqa").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[:2] not in [["vcaption", f] for f in families], (source.name, name)
