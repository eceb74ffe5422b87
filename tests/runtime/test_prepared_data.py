"""PreparedData and RunDirectory: one object for a preprocessing output, self-contained runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vcaption import text
from vcaption.config import ExperimentConfig
from vcaption.runtime import prepared_data
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory


def _write_output(directory, answers=True):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join([*text.RESERVED_TOKENS, "red", "circle"]) + "\n")
    (directory / "vocab_counts.txt").write_text("0\n0\n5\n1\n3\n2\n")
    if answers:
        (directory / "answers.txt").write_text("yes\nno\n")
    (directory / "stats.json").write_text(json.dumps({"captions": {"train": 5}, "vocab_size": 6}))
    (directory / "train-00000-of-00001.tfrecord").write_bytes(b"not copied")
    return PreparedData(str(directory))


def test_prepared_data_reads_every_file_of_a_preprocessing_output(tmp_path):
    data = _write_output(tmp_path / "records")
    assert data.vocabulary().size == 6 and data.stats["captions"]["train"] == 5
    np.testing.assert_array_equal(data.word_counts(), [0, 0, 5, 1, 3, 2])
    assert data.answers() == ["yes", "no"]
    assert data.split_pattern("val") == os.path.join(data.directory, "val-*.tfrecord*")
    assert data.is_complete()
    with pytest.raises(FileNotFoundError, match="labels.txt"):
        data.labels()


def test_relative_directories_become_absolute_and_urls_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert PreparedData("records").directory == str(tmp_path / "records")
    assert prepared_data.absolute("gs://bucket/records") == "gs://bucket/records"


def test_a_run_keeps_the_assets_but_not_the_records(tmp_path):
    data = _write_output(tmp_path / "records", answers=False)
    run = RunDirectory(str(tmp_path / "run"))
    copy = run.keep_assets(data)
    assert sorted(os.listdir(copy.directory)) == ["stats.json", "vocab.txt", "vocab_counts.txt"]
    assert copy.vocabulary().size == 6 and copy.directory == run.data.directory


def test_config_json_holds_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _write_output(tmp_path / "records")
    run = RunDirectory("runs/x")
    cfg = ExperimentConfig(name="x", model="LRCNCaptioner", model_args={})
    run.write_config(cfg, data)
    config = json.loads((tmp_path / "runs" / "x" / "config.json").read_text())
    assert config["run_dir"] == str(tmp_path / "runs" / "x")
    assert config["data_dir"] == str(tmp_path / "records")
    assert config["name"] == "x" and run.read_config() == config
