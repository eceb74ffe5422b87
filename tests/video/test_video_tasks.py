"""The video tasks on the shared runtime: activity (LRCN §4, Table 1) and video description.

Fast: which systems each task trains and where their files go, the fusion rows, the export's decoding
settings, the family's imports. Slow: both presets end to end at tiny sizes through the one training
routine: the metrics.json keys of the trainer before the move, a finished run loaded (not retrained)
by the same command, and `python -m vcaption.export --run` from the run directory alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from vcaption import config as config_lib
from vcaption import presets, text
from vcaption.export import export_run
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import get_task, run_preset
from vcaption.video import activity, description, run_files
from vcaption.video.builtin_videos import VIDEO_DEFAULTS, video_settings

# The keys of metrics.json as the video trainer wrote them before the move to the shared runtime
# ("export" joins them when the run exports); each system's training summary was {"steps", "seconds"}.
ACTIVITY_KEYS = {"task", "preset", "data_dir", "labels", "test_videos", "rows", "training", "profile"}
DESCRIPTION_KEYS = {"task", "preset", "data_dir", "beam_size", "rows", "best", "training", "examples",
                    "profile"}
TRAINING_KEYS = {"steps", "seconds"}

TINY_VIDEOS = ["task.videos=24", "task.frames=16", "task.video_size=24", "task.clip_length=8",
               "task.clip_stride=4", "data.image_size=16", "train.epochs=1", "train.batch_size=8",
               "decode.max_length=6"]
TINY_RECOGNIZERS = ["model.rgb_hidden_units=8", "model.flow_hidden_units=8", "model.cnn_features=8",
                    "model.cnn_filters=(4, 8)"]
TINY_S2VT = {"S2VT (ICCV 2015)": {"model": "S2VTCaptioner", "hidden_units": 8, "embedding_dim": 8,
                                  "frame_features": 8, "cnn_filters": (4, 8), "dropout": 0.0}}


def _tiny(preset: str, shapes_root, *overrides: str) -> config_lib.ExperimentConfig:
    return config_lib.apply_overrides(presets.get_preset(preset), [
        *TINY_VIDEOS, f"data.shapes_root={str(shapes_root)!r}", *overrides])


def _prepared(tmp_path, labels=("growing", "moving left"), words=("circle", "grows")) -> PreparedData:
    """A preprocessing output's assets (no records): what the tasks read before any training."""
    (tmp_path / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    (tmp_path / "stats.json").write_text(json.dumps({"examples": {"train": 20, "val": 2, "test": 2}}))
    text.Vocabulary.write(list(words), str(tmp_path / "vocab.txt"))
    return PreparedData(str(tmp_path))


# --- fast ----------------------------------------------------------------------------------------
def test_registry_names_both_video_tasks():
    assert isinstance(get_task("activity"), activity.ActivityTask)
    assert isinstance(get_task("video_caption"), description.VideoCaptionTask)


def test_video_settings_fill_defaults_and_count_the_frames_records_keep():
    assert video_settings({}) == {**VIDEO_DEFAULTS, "record_frames": 24}
    settings = video_settings({"frames": 24, "frame_stride": 2, "systems": {}, "clip_length": 8})
    assert settings["record_frames"] == 12 and settings["clip_length"] == 8 and "systems" not in settings


def test_activity_trains_lrcn_and_single_frame_on_both_streams_each_in_its_own_files(tmp_path):
    cfg = _tiny("lrcn_activity", tmp_path / "shapes", *TINY_RECOGNIZERS)
    systems = activity.ActivityTask().systems(cfg, _prepared(tmp_path), RunDirectory(str(tmp_path / "run")))
    assert [s.name for s in systems] == ["single-frame RGB", "single-frame flow", "LRCN RGB", "LRCN flow"]
    assert [s.keras_file for s in systems] == ["single_frame_rgb.keras", "single_frame_flow.keras",
                                               "lrcn_rgb.keras", "lrcn_flow.keras"]
    models = {s.name: s.build() for s in systems}
    assert {n: (m.stream, m.single_frame, m.num_classes) for n, m in models.items()} == {
        "single-frame RGB": ("frames", True, 2), "single-frame flow": ("flow", True, 2),
        "LRCN RGB": ("frames", False, 2), "LRCN flow": ("flow", False, 2)}
    assert models["LRCN flow"].hidden_units == 8 and models["LRCN RGB"].image_size == 16
    # LRCN §4 sizes unless the preset says otherwise.
    assert activity.activity_systems({})["LRCN flow"]["hidden_units"] == 1024
    assert activity.activity_systems({})["LRCN RGB"]["hidden_units"] == 256


def test_description_trains_each_configured_system_or_the_presets_model(tmp_path):
    data = _prepared(tmp_path)
    cfg = _tiny("video_s2vt", tmp_path / "shapes", f"task.systems={TINY_S2VT!r}")
    [system] = description.VideoCaptionTask().systems(cfg, data, RunDirectory(str(tmp_path / "run")))
    assert (system.name, system.keras_file) == ("S2VT (ICCV 2015)", "s2vt_iccv_2015.keras")
    model = system.build()
    assert model.vocab_size == data.vocabulary().size and model.num_frames == 8  # 16 frames, stride 2
    default = dataclasses.replace(cfg, task_args={}, model="S2VTCaptioner", model_args={"hidden_units": 8})
    assert description.caption_systems(default) == {
        "video_s2vt": {"model": "S2VTCaptioner", "hidden_units": 8}}


def test_systems_share_the_run_directory_under_their_own_names():
    names = ["single-frame RGB", "LRCN flow", "mean-pool (NAACL 2015)", "(c) decoder, tuple probabilities"]
    stems = [run_files.system_file_name(n) for n in names]
    assert stems == ["single_frame_rgb", "lrcn_flow", "mean_pool_naacl_2015", "c_decoder_tuple_probabilities"]
    assert run_files.system_prefix("LRCN flow") == "lrcn_flow_"


def test_fusion_rows_weigh_rgb_and_flow_probabilities():
    labels = np.array([0, 1, 1])
    rgb = np.array([[0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])   # right once
    flow = np.array([[0.4, 0.6], [0.3, 0.7], [0.3, 0.7]])  # right twice
    probabilities = {"single-frame RGB": rgb, "single-frame flow": flow, "LRCN RGB": rgb, "LRCN flow": flow}
    rows = activity.fusion_rows(probabilities, labels, ["a", "b"])
    assert list(rows) == ["single-frame fusion (0.5/0.5)", "single-frame fusion (0.33/0.67)",
                          "LRCN fusion (0.5/0.5)", "LRCN fusion (0.33/0.67)"]
    # (1/2, 1/2): video 0 is 0.65 vs 0.35 -> right; (1/3, 2/3): 0.57 vs 0.43 -> still right.
    assert rows["LRCN fusion (0.5/0.5)"] == {"accuracy": 1.0, "a": 1.0, "b": 1.0}
    assert math.isnan(activity.accuracy_row(rgb, labels, ["a", "b", "c"])["c"])  # no test video of "c"


def test_export_decoding_is_the_runs_unless_the_command_overrides_it():
    config = {"decode": {"beam_size": 3, "max_length": 17, "alpha": 0.0, "n_best": 3}}
    assert description.decode_settings(config, {}).beam_size == 3
    decode = description.decode_settings(config, {"beam_size": 2, "n_best": None})
    assert (decode.beam_size, decode.n_best) == (2, 2)  # a beam of 2 holds 2 hypotheses


def test_the_video_family_imports_only_captioning_and_the_shared_base():
    code = ("import sys, vcaption.video.activity, vcaption.video.description\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'beam_jobs' or m.split('.')[:2] in "
            "[['vcaption', f] for f in ('vqa', 'retrieval', 'objects')]))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


# --- slow: both presets end to end ---------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    """One built-in video world for both tasks (each preprocesses it with its own frame stride)."""
    return tmp_path_factory.mktemp("video_shapes")


def _check_training_files(run_path, stems):
    for stem in stems:
        for name in (f"{stem}.keras", f"{stem}_history.csv", f"{stem}_training.json"):
            assert (run_path / name).exists(), name
        assert (run_path / "logs" / stem).is_dir()  # TensorBoard


@pytest.mark.slow
def test_activity_preset_end_to_end(shapes_root, tmp_path, capsys):
    cfg = _tiny("lrcn_activity", shapes_root, *TINY_RECOGNIZERS,
                f"export.saved_models_dir={str(tmp_path / 'saved')!r}")
    run_path = tmp_path / "run"
    result = run_preset(cfg, str(run_path), verbose=0)
    written = json.loads((run_path / "metrics.json").read_text())
    assert set(written) == ACTIVITY_KEYS | {"export"}
    assert list(written["training"]) == ["single-frame RGB", "single-frame flow", "LRCN RGB", "LRCN flow"]
    assert all(set(t) == TRAINING_KEYS for t in written["training"].values())
    steps = -(-PreparedData(written["data_dir"]).stats["examples"]["train"] // 8)  # 1 epoch, batch 8
    assert written["training"]["LRCN RGB"]["steps"] == steps
    assert len(written["rows"]) == 8 and written["test_videos"] > 0
    assert set(written["rows"]["LRCN fusion (0.33/0.67)"]) == {"accuracy", *written["labels"]}
    _check_training_files(run_path, ["single_frame_rgb", "single_frame_flow", "lrcn_rgb", "lrcn_flow"])
    table = (run_path / "table.md").read_text()
    assert table.startswith("Activity recognition, test split") and "| LRCN flow |" in table
    assert table.strip() in capsys.readouterr().out
    assert written["export"] == str(tmp_path / "saved" / "lrcn_activity" / "1")
    assert set(tf.saved_model.load(written["export"]).signatures) == {"serving_default", "flow", "fusion"}

    # The same command again: every system finished, so each is loaded, not retrained.
    no_export = config_lib.apply_overrides(cfg, ["export.saved_models_dir=''"])
    again = run_preset(no_export, str(run_path), verbose=0)
    assert again["training"] == result["training"]
    assert json.dumps(again["rows"]) == json.dumps(written["rows"])  # NaN (a class without test videos) too
    # The run directory alone exports (its labels and clip settings travel with it).
    path = export_run(str(run_path), str(tmp_path / "from_run"))
    assert path == str(tmp_path / "from_run" / "lrcn_activity" / "1")


@pytest.mark.slow
def test_video_description_preset_end_to_end(shapes_root, tmp_path):
    cfg = _tiny("video_description", shapes_root, f"task.systems={TINY_S2VT!r}",
                "export.saved_models_dir=''")
    run_path = tmp_path / "run"
    run_preset(cfg, str(run_path), verbose=0)
    written = json.loads((run_path / "metrics.json").read_text())
    assert set(written) == DESCRIPTION_KEYS  # no export asked for, none made
    assert written["best"] == "S2VT (ICCV 2015)" and written["beam_size"] == 3
    assert set(written["training"]["S2VT (ICCV 2015)"]) == TRAINING_KEYS
    row = written["rows"]["S2VT (ICCV 2015)"]
    assert {"Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "decode_seconds"} <= set(row)
    assert 0 < len(written["examples"]["S2VT (ICCV 2015)"]) <= 5
    _check_training_files(run_path, ["s2vt_iccv_2015"])
    assert (run_path / "table.md").read_text().startswith("```\nVideo description, test split")

    path = export_run(str(run_path), str(tmp_path / "saved"), beam_size=2, n_best=2)
    captions = tf.saved_model.load(path).signatures["serving_default"](
        frames=tf.constant([[tf.io.encode_jpeg(tf.zeros([16, 16, 3], tf.uint8)).numpy()] * 3]))
    assert captions["captions"].shape == (1, 2)
