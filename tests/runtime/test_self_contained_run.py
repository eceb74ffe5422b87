"""A run directory stands alone: it exports from any working directory after its data is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from vcaption.captioning.export import warmup_jpeg

TINY = ["--set", "model.hidden_units=16", "--set", "model.embedding_dim=8", "--set", "model.image_embedding_dim=8",
        "--set", "model.image_size=32", "--set", "data.image_size=32", "--set", "decode.max_length=8",
        "--set", "train.self_critical_steps=2"]


def _run(command, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", *command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_export_from_another_directory_after_the_preprocessing_output_is_gone(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    run = work / "runs" / "lrcn_2f"
    # Relative paths on purpose: config.json must record them absolute.
    _run(["vcaption.train", "--output", "runs/lrcn_2f", "--epochs", "1", "--batch-size", "16", "--quiet",
          "--set", "data.shapes_root=shapes", "--set", "data.shapes_images=60", "--set", "data.min_count=1",
          "--set", "train.baselines=false", "--set", "export.saved_models_dir=''", *TINY], cwd=work)
    config = json.loads((run / "config.json").read_text())
    assert config["run_dir"] == str(run) and os.path.isabs(config["data_dir"])
    assert (run / "data" / "vocab.txt").exists()
    os.rename(work / "shapes", tmp_path / "moved_away")  # the world and its records
    assert not os.path.exists(config["data_dir"])

    out = _run(["vcaption.export", "--run", str(run), "--output", str(tmp_path / "x")], cwd=elsewhere)
    path = out.strip().splitlines()[-1]
    assert path == str(tmp_path / "x" / "lrcn_2f" / "1")
    # The model server's config beside the models directory now names the export.
    from vcaption.serving import protos

    config = protos.read_model_server_config(str(tmp_path / "serving" / "models.config"))
    assert [m.name for m in config.model_config_list.config] == ["lrcn_2f"]
    loaded = tf.saved_model.load(path)
    result = loaded.signatures["serving_default"](image_bytes=tf.constant([warmup_jpeg()]))
    assert result["captions"].shape[0] == 1 and result["captions"].dtype == tf.string
