"""python -m vcaption.caption: N-best captions (or VQA answers) for image files from an export, bad
files reported while the others are answered, usage errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from vcaption import caption, text
from vcaption.bench.batch_caption import export_untrained_captioner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image(seed: int, height: int, width: int, ext: str = ".jpg") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(ext, pixels)[1].tobytes()


@pytest.fixture(scope="module")
def captioner(tmp_path_factory) -> str:
    """An untrained small LRCN-2f exported once (beam 3, 2-best)."""
    return export_untrained_captioner(str(tmp_path_factory.mktemp("saved_models")))


@pytest.fixture(scope="module")
def vqa_export(tmp_path_factory) -> str:
    from vcaption.vqa.export import export_vqa
    from vcaption.vqa.model import VQAModel

    tmp = tmp_path_factory.mktemp("vqa")
    words = "what color is the circle how many shapes".split()
    vocab_path = text.Vocabulary.write(words, str(tmp / "vocab.txt"))
    (tmp / "answers.txt").write_text("yes\nno\nred\n2\n")
    keras.utils.set_random_seed(0)
    model = VQAModel(vocab_size=len(text.RESERVED_TOKENS) + len(words), num_answers=4, encoder="small_cnn",
                     image_size=16, embedding_dim=6, lstm_units=5, common_dim=7, hidden_units=9, dropout=0.0)
    return export_vqa(model, vocab_path, str(tmp / "answers.txt"), str(tmp / "saved_models"), "vqa", 16,
                      top_k=3)


@pytest.fixture()
def files(tmp_path) -> dict:
    """Good images of two formats and sizes, interleaved with every kind of bad file."""
    paths = {}
    for name, content in [("a.jpg", _image(1, 40, 56)), ("notes.txt", b"not an image\n"),
                          ("b.png", _image(2, 30, 45, ".png")), ("empty.jpg", b""),
                          ("c.jpg", _image(3, 64, 33))]:
        (tmp_path / name).write_bytes(content)
        paths[name] = str(tmp_path / name)
    (tmp_path / "album.jpg").mkdir()
    paths["album.jpg"] = str(tmp_path / "album.jpg")
    paths["missing.jpg"] = str(tmp_path / "missing.jpg")
    return paths


def _lines(capsys) -> tuple[list[dict], str]:
    out = capsys.readouterr()
    return [json.loads(line) for line in out.out.splitlines()], out.err


def test_good_files_get_the_exports_captions_and_bad_ones_an_error_line(captioner, files, capsys):
    order = ["a.jpg", "notes.txt", "album.jpg", "b.png", "missing.jpg", "empty.jpg", "c.jpg"]
    status = caption.main(["--model", captioner, "--batch-size", "2", *(files[name] for name in order)])
    lines, err = _lines(capsys)
    assert status == 1  # some files failed ...
    assert [line["file"] for line in lines] == [files[name] for name in order]  # ... in order, one line each
    by_name = dict(zip(order, lines))
    serve = tf.saved_model.load(captioner).signatures["serving_default"]
    for name in ("a.jpg", "b.png", "c.jpg"):  # ... and the others answered as the export answers
        expected = serve(image_bytes=tf.constant([open(files[name], "rb").read()]))
        assert by_name[name]["captions"] == [c.decode() for c in expected["captions"].numpy()[0]]
        np.testing.assert_allclose(by_name[name]["scores"], expected["scores"].numpy()[0], rtol=1e-4, atol=1e-4)
        assert len(by_name[name]["captions"]) == 2 and "error" not in by_name[name]
    assert "is a directory" in by_name["album.jpg"]["error"]
    assert by_name["missing.jpg"]["error"].startswith("cannot be read")
    assert "not a JPEG, PNG, GIF or BMP" in by_name["notes.txt"]["error"]
    assert "Condition" not in by_name["notes.txt"]["error"]  # the message, not TensorFlow's tensor dump
    assert by_name["empty.jpg"]["error"].startswith("cannot be decoded")
    assert f"{files['album.jpg']}: is a directory" in err and "4 of 7 files failed" in err


def test_a_vqa_export_answers_the_question_about_each_image(vqa_export, files, capsys):
    question = "what color is the circle?"
    status = caption.main(["--model", vqa_export, "--question", question, files["a.jpg"], files["c.jpg"]])
    lines, _ = _lines(capsys)
    assert status == 0
    serve = tf.saved_model.load(vqa_export).signatures["serving_default"]
    for line, name in zip(lines, ("a.jpg", "c.jpg")):
        expected = serve(image_bytes=tf.constant([open(files[name], "rb").read()]),
                         question=tf.constant([question]))
        assert line["question"] == question
        assert line["answers"] == [a.decode() for a in expected["answers"].numpy()[0]]
        np.testing.assert_allclose(line["probabilities"], expected["probabilities"].numpy()[0], rtol=1e-5)


def test_usage_errors_exit_2_naming_the_problem(captioner, vqa_export, files, tmp_path, capsys):
    assert caption.main(["--model", vqa_export, files["a.jpg"]]) == 2
    assert "pass --question" in capsys.readouterr().err
    assert caption.main(["--model", captioner, "--question", "what?", files["a.jpg"]]) == 2
    assert "--question needs a VQA export" in capsys.readouterr().err
    assert caption.main(["--model", str(tmp_path), files["a.jpg"]]) == 2
    assert "not a SavedModel directory" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter importing TensorFlow; main() is what the tests above run
def test_the_command_a_user_types(captioner, files):
    completed = subprocess.run(
        [sys.executable, "-m", "vcaption.caption", "--model", captioner, files["a.jpg"], files["b.png"]],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})  # the command's own default
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = [json.loads(line) for line in completed.stdout.splitlines()]
    assert [line["file"] for line in lines] == [files["a.jpg"], files["b.png"]]
    assert all(len(line["captions"]) == len(line["scores"]) == 2 for line in lines)
    assert completed.stderr == ""  # quiet by default: TensorFlow's log lines are not the user's output
