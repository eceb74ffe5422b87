"""VQA: the model (config, saving, masking), the soft-target loss and exact accuracy metric, answers
outside the top K counted at ingest, the hermetic export served by a TensorFlow-only process, and a
run directory re-exported by `python -m vcaption.export --run` alone."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import TF_ONLY_PREAMBLE, run_batching_test, run_saving_test, run_serialization_test

from beam_jobs import preprocess
from vcaption import config as config_lib
from vcaption import export as export_cli
from vcaption import images, presets, text
from vcaption.metrics import vqa as vqa_metrics
from vcaption.runtime import export_core
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.vqa import export as export_vqa
from vcaption.vqa.model import SoftTargetLoss, VQAModel, vqa_accuracy

IMAGE_SIZE = 16
WORDS = "what color is the circle square how many shapes are there red blue".split()
ANSWERS = ["yes", "no", "red", "blue", "2", "3"]
TINY = dict(embedding_dim=6, lstm_units=5, common_dim=7, hidden_units=9, dropout=0.0)


def _tiny_model(image=True, seed=0):
    keras.utils.set_random_seed(seed)
    return VQAModel(vocab_size=len(text.RESERVED_TOKENS) + len(WORDS), num_answers=len(ANSWERS),
                    image=image, encoder="small_cnn", image_size=IMAGE_SIZE, **TINY)


def _inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"visual": rng.uniform(0, 255, (batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"),
            "question": np.array([[4, 5, 6, 0, 0], [10, 11, 12, 13, 0], [3, 3, 3, 3, 3]][:batch], "int32")}


# --- model -----------------------------------------------------------------------------------------

def test_config_round_trip_and_keras_saving(tmp_path):
    model = _tiny_model()
    assert model(_inputs()).shape == (3, len(ANSWERS))
    run_serialization_test(model)
    run_saving_test(model, _inputs(), tmp_path)


def test_question_only_baseline_has_no_image_path():
    blind = _tiny_model(image=False)
    assert set(blind.input) == {"question"} and blind.encoder is None
    assert blind({"question": _inputs()["question"]}).shape == (3, len(ANSWERS))
    assert not any("small_cnn" in v.path or "image_embedding" in v.path for v in blind.variables)


def test_padding_is_masked_and_the_image_matters():
    model = _tiny_model()
    inputs = _inputs()
    padded = {**inputs, "question": np.pad(inputs["question"], [[0, 0], [0, 4]])}
    np.testing.assert_allclose(model(padded), model(inputs), atol=1e-6)
    other = {**inputs, "visual": inputs["visual"][::-1].copy()}
    assert not np.allclose(model(other)[0], model(inputs)[0], atol=1e-5)


def test_paper_sizes_are_the_defaults():
    model = VQAModel(vocab_size=50, num_answers=1000, encoder="features", feature_dim=4096)
    assert model.get_layer("lstm_states").output.shape[-1] == 2 * 2 * 512  # [c1; h1; c2; h2]
    assert model.get_layer("question_embedding").output.shape[-1] == 1024
    assert model.get_layer("image_embedding").output.shape[-1] == 1024
    assert model.get_layer("hidden_2").output.shape[-1] == 1000
    assert model.dropout == 0.5


# --- loss and metric ---------------------------------------------------------------------------------

def test_soft_target_loss_by_hand():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]], "float32"))
    scores = np.array([[0.9, 0.3, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], "float32")
    soft = SoftTargetLoss("soft", reduction=None)(scores, logits).numpy()
    # row 0: target (0.75, 0.25, 0) -> -(0.75 log 0.5 + 0.25 log 0.25); row 1: -log 0.5; row 2: no target
    np.testing.assert_allclose(soft, [-(0.75 * np.log(0.5) + 0.25 * np.log(0.25)), -np.log(0.5), 0.0],
                               rtol=1e-5)
    hard = SoftTargetLoss("most_common", reduction=None)(scores, logits).numpy()
    np.testing.assert_allclose(hard, [-np.log(0.5), -np.log(0.5), 0.0], rtol=1e-5)
    with pytest.raises(ValueError, match="target"):
        SoftTargetLoss("mean")


def test_in_graph_accuracy_equals_the_official_scorer():
    humans = [["red"] * 3 + ["blue"] * 7, ["Two", "2", "3"] + ["x"] * 7]
    answers = ["red", "blue", "2", "3"]
    scores = np.zeros((2, 4), "float32")
    for row, h in enumerate(humans):
        for answer, s in vqa_metrics.soft_scores(h).items():
            if answer in answers:
                scores[row, answers.index(answer)] = s
    logits = np.array([[5.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]], "float32")  # "red", "3"
    expected = [vqa_metrics.accuracy("red", humans[0]), vqa_metrics.accuracy("3", humans[1])]
    assert expected == pytest.approx([0.9, 0.3])
    np.testing.assert_allclose(vqa_accuracy(scores, logits), expected, rtol=1e-6)


# --- ingest: the official normal form; answers outside the top K are counted ------------------------

def test_ingest_builds_targets_in_the_official_normal_form():
    from vcaption import ingest

    assert ingest.normalize_answer("Two.") == "2" and ingest.normalize_answer("the Circle") == "circle"
    # "Two", "2", "2." are one answer given by 3 humans -> 0.9; "3" by 7 -> 1.0
    assert ingest.vqa_soft_scores(["Two", "2", "2."] + ["3"] * 7) == pytest.approx({"2": 0.9, "3": 1.0})


def test_record_encoder_counts_questions_without_targets(tmp_path):
    from vcaption import ingest
    from vcaption.datasets.base import VQAExample

    image = tmp_path / "1.jpg"
    image.write_bytes(_jpeg(0))
    encoder = ingest.RecordEncoder(ingest.IngestConfig(image_size=16),
                                   [*text.RESERVED_TOKENS, *WORDS], answers=["yes", "2"])

    def counts(split, answers):
        example = VQAExample("7", "1", split, str(image), "how many shapes are there", answers=answers)
        prepared = next(ingest.prepare_text(example))
        return dict(encoder.encode(prepared).counts)

    # 8 of 10 humans outside the top K, but "Two"/"2" is in it: a target, 8 answers counted
    assert counts("train", ("Two", "2") + ("3",) * 8) == {"examples/train": 1,
                                                          "answers_outside_top_k/train": 8}
    # no answer in the top K: a record without a target, counted as such
    assert counts("val", ("3",) * 10) == {"examples/val": 1, "questions_without_top_answer/val": 1,
                                         "answers_outside_top_k/val": 10}
    # a test question without annotations
    assert counts("test", ()) == {"examples/test": 1, "questions_without_answers/test": 1}


@pytest.mark.slow  # a Beam pipeline run
def test_answers_outside_top_k_are_counted_not_dropped(shapes_world, tmp_path):
    stats = preprocess.run(["--format", "vqa", "--input", str(shapes_world / "vqa"),
                            "--output", str(tmp_path), "--image-size", "16", "--min-count", "1",
                            "--top-answers", "4"])
    top = (tmp_path / "answers.txt").read_text().splitlines()
    assert len(top) == 4
    expected_outside, expected_without, questions = {}, {}, {}
    for split in ("train", "val", "test"):
        data = json.loads((shapes_world / "vqa" / f"v2_shapes_{split}_annotations.json").read_text())
        questions[split] = len(data["annotations"])
        humans = [[vqa_metrics.normalize_answer(a["answer"]) for a in q["answers"]]
                  for q in data["annotations"]]
        expected_outside[split] = sum(a not in top for h in humans for a in h)
        expected_without[split] = sum(all(a not in top for a in h) for h in humans)
    assert stats["examples"] == questions  # every question is a record, target or not
    assert stats["answers_outside_top_k"] == {s: n for s, n in expected_outside.items() if n}
    assert stats["questions_without_top_answer"] == {s: n for s, n in expected_without.items() if n}
    assert sum(expected_outside.values()) > 0 and stats["dead_letter"]["total"] == 0


# --- export ----------------------------------------------------------------------------------------

SERVE_SCRIPT = TF_ONLY_PREAMBLE + textwrap.dedent("""

    export_dir, request_path, out_path = sys.argv[1:]
    with open(request_path) as f:
        request = json.load(f)
    loaded = tf.saved_model.load(export_dir)
    out = loaded.signatures["serving_default"](
        image_bytes=tf.constant([base64.b64decode(j) for j in request["jpegs"]]),
        question=tf.constant(request["questions"]))
    result = {"answers": [[a.decode() for a in row] for row in out["answers"].numpy()],
              "probabilities": out["probabilities"].numpy().tolist(),
              "modules": sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)}
    with open(out_path, "w") as f:
        json.dump(result, f)
""")


def _jpeg(seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(20, 24, 3)).astype(np.uint8)
    return images.encode_jpeg(tf.constant(pixels)).numpy()


@pytest.fixture(scope="module")
def vqa_export(tmp_path_factory):
    """A tiny VQA model exported from a workspace that is deleted before anything serves it."""
    tmp = tmp_path_factory.mktemp("vqa_export")
    workspace = tmp / "records"
    vocab_path = text.Vocabulary.write(WORDS, str(workspace / "vocab.txt"))
    answers_path = workspace / "answers.txt"
    answers_path.write_text("".join(a + "\n" for a in ANSWERS))
    model = _tiny_model(seed=1)
    rng = np.random.default_rng(0)  # larger weights so that answers differ between inputs
    for variable in model.trainable_variables:
        if "kernel" in variable.path and "small_cnn" not in variable.path:
            scale = 2.0 / np.sqrt(variable.shape[0])
            variable.assign(rng.normal(0.0, scale, variable.shape).astype("float32"))
    path = export_vqa.export_vqa(model, vocab_path, str(answers_path), str(tmp / "saved_models"), "vqa",
                                 IMAGE_SIZE, top_k=3)
    jpegs = [_jpeg(seed) for seed in range(3)]
    questions = ["What color is the circle?", "how many SHAPES are there", "is the zebra red?"]
    # The package's own path: the same image and text functions, the Keras model, the softmax.
    pixels = tf.stack([images.preprocess_image(j, IMAGE_SIZE) for j in jpegs])
    ids = text.Vocabulary(vocab_path).lookup(text.tokenize(tf.constant(questions))).to_tensor()
    probabilities = tf.nn.softmax(model({"visual": tf.cast(pixels, tf.float32),
                                         "question": tf.cast(ids, tf.int32)}, training=False)).numpy()
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :3]
    expected = {"answers": [[ANSWERS[k] for k in row] for row in order],
                "probabilities": np.take_along_axis(probabilities, order, axis=-1)}
    shutil.rmtree(workspace)
    return {"path": path, "jpegs": jpegs, "questions": questions, "expected": expected, "tmp": tmp}


def test_fresh_tensorflow_only_process_answers(vqa_export):
    tmp = vqa_export["tmp"]
    (tmp / "request.json").write_text(json.dumps({
        "jpegs": [base64.b64encode(j).decode() for j in vqa_export["jpegs"]],
        "questions": vqa_export["questions"]}))
    (tmp / "serve.py").write_text(SERVE_SCRIPT)
    subprocess.run([sys.executable, str(tmp / "serve.py"), vqa_export["path"], str(tmp / "request.json"),
                    str(tmp / "served.json")], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                   cwd=str(tmp))
    served = json.loads((tmp / "served.json").read_text())
    assert served["modules"] == []  # neither keras nor vcaption was needed to serve
    assert served["answers"] == vqa_export["expected"]["answers"]
    np.testing.assert_allclose(served["probabilities"], vqa_export["expected"]["probabilities"], rtol=1e-5)
    assert len({tuple(row) for row in served["answers"]}) > 1
    assert all(set(row) <= set(ANSWERS) for row in served["answers"])
    probabilities = np.array(served["probabilities"])
    assert np.all(np.diff(probabilities, axis=1) <= 0) and np.all(probabilities.sum(axis=1) <= 1 + 1e-6)


def test_answers_travel_as_an_asset_with_a_warmup_request(vqa_export):
    path = vqa_export["path"]
    assert open(os.path.join(path, "assets", "answers.txt")).read().split("\n")[:-1] == ANSWERS
    assert os.path.exists(os.path.join(path, "assets", "vocab.txt"))
    assert os.path.exists(os.path.join(path, "assets.extra", export_core.WARMUP_FILE))
    ops = export_core.saved_model_op_types(path)
    assert {"LookupTableFindV2", "DecodeImage", "StringSplitV2"} <= ops and not ops & export_core.PYTHON_OPS


def test_bad_requests_fail_clearly(vqa_export):
    serve = tf.saved_model.load(vqa_export["path"]).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        serve(image_bytes=tf.constant(vqa_export["jpegs"][:2]), question=tf.constant(["what color?"]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        serve(image_bytes=tf.constant([b"not an image"]), question=tf.constant(["what color?"]))
    # A question with no known words (or no words) still gets answers.
    out = serve(image_bytes=tf.constant(vqa_export["jpegs"][:2]), question=tf.constant(["", "zebra?!"]))
    assert out["answers"].shape == (2, 3)


def test_every_signature_batches_row_for_row(vqa_export):
    run_batching_test(vqa_export["path"], {"serving_default": {
        "image_bytes": np.array(vqa_export["jpegs"][:1], object),
        "question": np.array([vqa_export["questions"][0].encode()], object)}})


def test_export_refuses_mismatched_answers(tmp_path):
    vocab_path = text.Vocabulary.write(WORDS, str(tmp_path / "vocab.txt"))
    (tmp_path / "answers.txt").write_text("yes\nno\n")
    with pytest.raises(ValueError, match="has 2 answers, the model predicts 6"):
        export_vqa.VQAServingModule(_tiny_model(), text.Vocabulary(vocab_path), str(tmp_path / "answers.txt"),
                                    IMAGE_SIZE)
    with pytest.raises(ValueError, match="image encoder"):
        export_vqa.VQAServingModule(_tiny_model(image=False), text.Vocabulary(vocab_path),
                                    str(tmp_path / "answers.txt"), IMAGE_SIZE)


def test_a_run_directory_exports_from_anywhere_after_its_data_is_gone(tmp_path, monkeypatch):
    """`python -m vcaption.export --run DIR` reads the run alone: config.json (task, name, sizes),
    model.keras and its data/ copy of vocab.txt and answers.txt."""
    records = tmp_path / "records"
    text.Vocabulary.write(WORDS, str(records / "vocab.txt"))
    (records / "answers.txt").write_text("".join(a + "\n" for a in ANSWERS))
    run = RunDirectory(str(tmp_path / "run"))
    run.keep_assets(PreparedData(str(records)))
    run.write_config(config_lib.apply_overrides(presets.get_preset("vqa_lstm_cnn"), ["data.image_size=16"]),
                     PreparedData(str(records)))
    _tiny_model().save(run.file("model.keras"))
    shutil.rmtree(records)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    path = export_cli.export_run(run.path, "exports", top_k=2)
    assert os.path.abspath(path) == str(elsewhere / "exports" / "vqa_lstm_cnn" / "1")  # the preset's name
    out = tf.saved_model.load(path).signatures["serving_default"](
        image_bytes=tf.constant([_jpeg(0)]), question=tf.constant(["what color is the circle?"]))
    assert out["answers"].shape == (1, 2)
    assert {a.decode() for a in out["answers"].numpy()[0]} <= set(ANSWERS)
