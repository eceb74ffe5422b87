"""`python -m vcaption.train --list-presets / --print-config`: every preset named, the config resolved;
without Java, the presets that score captions stop before any work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vcaption import evaluate, presets, registry, train
from vcaption.metrics import caption as caption_metrics
from vcaption.runtime.task import get_task


def test_list_presets_names_every_preset_with_its_family_and_one_line(capsys):
    assert train.main(["--list-presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == presets.preset_names()
    assert len(lines) == len(presets.PRESETS) >= 16
    for line in lines:
        name, family, summary = line.split(maxsplit=2)
        assert registry.TASKS[presets.get_preset(name).task].startswith(f"vcaption.{family}.")
        assert summary and len(line) < 160


def test_print_config_shows_the_resolved_configuration_without_running(capsys, tmp_path):
    assert train.main(["--preset", "lrcn_2u", "--print-config", "--epochs", "3", "--data", str(tmp_path),
                       "--set", "model.hidden_units=32"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["name"] == "lrcn_2u" and config["train"]["epochs"] == 3
    assert config["model_args"]["hidden_units"] == 32 and config["data"]["data_dir"] == str(tmp_path)
    assert not (tmp_path / "metrics.json").exists()


# --- Java: pycocoevalcap's PTB tokenizer and METEOR run on it ---------------------------------------

def _path_without_java() -> str:
    """PATH without the directories that hold a `java`."""
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "java"))]
    path = os.pathsep.join(kept)
    assert shutil.which("java", path=path) is None
    return path


def test_train_without_java_stops_before_generating_the_world(tmp_path):
    # The default command from a fresh directory: it would generate data/shapes18k, preprocess it
    # and train for minutes before the first caption is scored.
    env = {**os.environ, "PATH": _path_without_java(), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "vcaption.train"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: the lrcn_2f preset scores captions with pycocoevalcap")
    assert "`java` is not on PATH" in message and "apt-get install -y default-jre-headless" in message
    assert "conda install -c conda-forge openjdk" in message
    assert "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []  # no world, no records, no run directory


def test_which_presets_check_for_java():
    needs_java = {name for name in presets.preset_names()
                  if presets.get_preset(name).task in registry.TASKS_SCORING_CAPTIONS}
    # Captioning, video description and region captioning score captions; VQA, objects, activity
    # and the ranker do not, and run without Java.
    assert {"lrcn_2f", "karpathy_mrnn", "mao_mrnn", "video_s2vt", "karpathy_region_captioning"} <= needs_java
    assert not needs_java & {"vqa_lstm_cnn", "object_classifier", "lrcn_activity", "karpathy_ranker"}


def test_tasks_without_captions_do_not_ask_for_java(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without_java())
    task = get_task("vqa")

    class Started(Exception):
        pass

    def prepare_data(*args):
        raise Started  # got past the Java check to the first piece of work

    monkeypatch.setattr(task, "prepare_data", prepare_data)
    with pytest.raises(Started):
        task.run(presets.get_preset("vqa_lstm_cnn"), str(tmp_path / "run"))


def test_evaluate_captions_without_java_fails_first_with_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", _path_without_java())
    missing = str(tmp_path / "absent.json")  # never read: the Java check comes first
    assert evaluate.main(["--results", missing, "--annotations", missing]) == 2
    err = capsys.readouterr().err
    assert "error: python -m vcaption.evaluate scores captions" in err and "default-jre-headless" in err
    with pytest.raises(caption_metrics.JavaNotFound, match="score_captions .* not on PATH"):
        caption_metrics.score_captions({"1": ["a cat"]}, {"1": "a cat"})
