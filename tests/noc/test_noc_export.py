"""The NOC export (`python -m vcaption.export --run`, the captioner SavedModel) carries the NOC
vocabulary, so a fresh TensorFlow-only process can caption with a word no paired caption had.

The tiny model here is untrained; only its visual network's score for "star" (a corpus-only
word) is set high, so "star" can reach a caption by no other path than the element-wise sum of
the visual scores and the language model. (A trained run's export naming held-out objects: the
README's "Novel object captioning" section.)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf
from helpers import TF_ONLY_PREAMBLE

from vcaption import images, text
from vcaption.captioning import evaluation
from vcaption.config import DecodeConfig
from vcaption.noc.model import NOCCaptioner
from vcaption.noc.task import NOC_DATA, NOCTask
from vcaption.runtime.run_directory import RunDirectory

CAPTION_WORDS = ["a", "red", "circle"]  # the records' vocabulary
CORPUS_ONLY = ["star"]  # appended from the text corpus
DECODE = DecodeConfig(beam_size=2, max_length=6, n_best=2)

SERVE = TF_ONLY_PREAMBLE + textwrap.dedent("""
    export_dir, jpeg_path, out_path = sys.argv[1:]
    loaded = tf.saved_model.load(export_dir)
    with open(jpeg_path, "rb") as f:
        out = loaded.signatures["serving_default"](image_bytes=tf.constant([f.read()]))
    modules = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tf_keras", "vcaption"))
    with open(out_path, "w") as f:
        json.dump({"captions": [c.decode() for c in out["captions"].numpy()[0]], "modules": modules}, f)
""")


def test_export_captions_a_corpus_only_word_in_a_tensorflow_only_process(tmp_path):
    words = [*text.RESERVED_TOKENS, *CAPTION_WORDS, *CORPUS_ONLY]
    star = words.index("star")
    keras.utils.set_random_seed(0)
    model = NOCCaptioner(vocab_size=len(words), class_word_ids=[words.index("circle"), star], hidden_units=8,
                         embedding_dim=4, image_embedding_dim=5, encoder="small_cnn", image_size=32)
    bias = np.zeros(len(words), np.float32)
    bias[star] = 50.0  # the visual network "sees" a star; the language model is untouched
    model.visual_words.bias.assign(bias)
    run = RunDirectory(str(tmp_path / "run"))
    model.save(run.file("model.keras"))
    text.Vocabulary.write(words[len(text.RESERVED_TOKENS):], os.path.join(run.file(NOC_DATA), "vocab.txt"))
    run.write_json("config.json", {"decode": vars(DECODE), "data": {"image_size": 32}})
    path = NOCTask().export_run(run, str(tmp_path / "saved_models"), "noc", {})

    jpeg = images.encode_jpeg(np.full((40, 40, 3), 90, np.uint8)).numpy()
    (tmp_path / "image.jpg").write_bytes(jpeg)
    in_package = evaluation.make_generator(model, DECODE)(images.preprocess_images(tf.constant([jpeg]), 32))
    expected = text.Vocabulary(tokens=words).decode(in_package.ids[:, 0]).numpy()[0].decode()
    (tmp_path / "serve.py").write_text(SERVE)
    subprocess.run([sys.executable, str(tmp_path / "serve.py"), path, str(tmp_path / "image.jpg"),
                    str(tmp_path / "served.json")], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    served = json.loads((tmp_path / "served.json").read_text())
    assert served["modules"] == []
    assert "star" in served["captions"][0].split()
    assert served["captions"][0] == expected
