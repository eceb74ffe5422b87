"""python -m vcaption.train on tiny built-in data: metrics.json, resume after kill -9, two workers."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import tensorflow as tf

from vcaption import config as config_lib
from vcaption import presets, train
from vcaption.captioning import task as captioning
from vcaption.runtime import devices, trainer
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.task import run_preset

TINY = ["--set", "model.hidden_units=16", "--set", "model.embedding_dim=8",
        "--set", "model.image_embedding_dim=8", "--set", "model.image_size=32",
        "--set", "data.image_size=32", "--set", "decode.max_length=8", "--set", "export.saved_models_dir=''",
        "--set", "train.self_critical_steps=2"]


def _command(data_dir, output, *extra):
    return [sys.executable, "-m", "vcaption.train", "--data", str(data_dir), "--output", str(output),
            "--quiet", *TINY, *extra]


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def test_overrides_reach_every_section():
    cfg = config_lib.apply_overrides(presets.get_preset("lrcn_2u"), [
        "train.epochs=3", "model.hidden_units=32", "train.optimizer=sgd", "data.feature_dim=None"])
    assert (cfg.train.epochs, cfg.model_args["hidden_units"], cfg.train.optimizer) == (3, 32, "sgd")
    assert cfg.model_args["variant"] == "2u"
    with pytest.raises(ValueError, match="unknown setting"):
        config_lib.apply_overrides(cfg, ["train.epoch=3"])
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get_preset("lrcn_3x")


def test_overrides_read_command_line_spellings_of_booleans_and_none():
    cfg = config_lib.apply_overrides(presets.get_preset("lrcn_2f"), [
        "train.baselines=false", "model.encoder_trainable=False", "data.feature_dim=null",
        "export.name=true_colours"])
    assert cfg.train.baselines is False and cfg.model_args["encoder_trainable"] is False
    assert cfg.data.feature_dim is None and cfg.export.name == "true_colours"
    assert config_lib.apply_overrides(cfg, ["train.baselines=TRUE"]).train.baselines is True


def test_native_bf16_flags_are_read_from_the_kernel_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert devices.cpu_has_native_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")  # AMD Zen 4: no AMX
    assert devices.cpu_has_native_bf16(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")  # emulated bf16
    assert not devices.cpu_has_native_bf16(str(cpuinfo))
    assert not devices.cpu_has_native_bf16(str(tmp_path / "absent"))


@pytest.mark.parametrize("argv, expected", [
    ([], "auto"),  # the default preset asks for bf16 where it is fast
    (["--preset", "lrcn_2u"], None),  # the others train in float32 unless told
    (["--mixed-precision"], "mixed_bfloat16"),
    (["--no-mixed-precision"], None),
    (["--set", "model.dtype='float32'"], "float32"),  # an explicit dtype wins
    (["--mixed-precision", "--set", "model.dtype='float32'"], "float32"),
])
def test_mixed_precision_flags_and_the_default_presets_automatic_dtype(monkeypatch, argv, expected):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])  # a CPU host
    cfg = train.config_from_args(train.parse_args(argv))
    assert cfg.model_args.get("dtype") == expected


@pytest.mark.parametrize("native_bf16, gpu, expected", [(True, False, "mixed_bfloat16"),
                                                        (False, False, "float32"),
                                                        (True, True, "float32")])
def test_automatic_dtype_is_bf16_only_on_cpu_hosts_with_native_bf16(monkeypatch, native_bf16, gpu, expected):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["/physical_device:GPU:0"] if gpu else [])
    cfg = config_lib.apply_overrides(presets.get_preset("lrcn_2f"), TINY[1::2])
    assert cfg.model_args["dtype"] == "auto"
    model = captioning.build_model(cfg, vocab_size=12, word_counts=None)
    assert model.dtype_policy.name == expected


@pytest.mark.slow
def test_train_writes_metrics_of_model_and_both_baselines(shapes_records, tmp_path):
    args = train.parse_args(["--data", str(shapes_records), "--epochs", "1", "--batch-size", "16",
                             *TINY, "--set", "decode.beam_size=2",
                             "--set", f"export.saved_models_dir={str(tmp_path / 'saved')!r}"])
    result = run_preset(train.config_from_args(args), str(tmp_path / "run"), verbose=0)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result))
    keys = {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    assert keys | {"perplexity"} <= set(written["model"])
    assert keys | {"perplexity"} <= set(written["baselines"]["blind"])
    assert keys <= set(written["baselines"]["nearest_neighbour"])
    assert written["beam_size"] == 2 and written["split"] == "test"
    steps_per_epoch = -(-PreparedData(str(shapes_records)).stats["captions"]["train"] // 16)
    assert written["training"]["steps"] == steps_per_epoch
    for name in ("model.keras", "blind.keras", "results_test.json", "caption_grid_test.png",
                 "training_curves.png", "history.csv", "config.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert os.listdir(tmp_path / "run" / "logs")  # TensorBoard
    assert written["export"] == str(tmp_path / "saved" / "lrcn_2f" / "1")
    assert (tmp_path / "saved" / "lrcn_2f" / "1" / "saved_model.pb").exists()
    # The model server's config beside the exports names them (and nothing else).
    from vcaption.serving import protos

    served = protos.read_model_server_config(str(tmp_path / "serving" / "models.config"))
    assert [m.name for m in served.model_config_list.config] == ["lrcn_2f"]


def _history_epochs(output) -> list[int]:
    with open(os.path.join(output, "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_kill_9_then_same_command_resumes_from_last_checkpoint(shapes_records, tmp_path):
    output = tmp_path / "run"
    epochs, batch = 30, 16
    command = _command(shapes_records, output, "--epochs", str(epochs), "--batch-size", str(batch),
                       "--set", "train.checkpoint_every=15", "--set", "train.baselines=False")
    metadata = output / "backup" / "training_metadata.json"
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(12_000):  # poll every 50 ms, for at most ~10 minutes
        if process.poll() is not None:
            break
        try:
            if json.loads(metadata.read_text()).get("epoch", 0) >= 3:
                break
        except (OSError, ValueError):  # not written yet, or caught mid-write
            pass
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    checkpointed = json.loads(metadata.read_text())["epoch"]  # completed intervals on disk
    logged_before = len(_history_epochs(output))
    total_steps = epochs * -(-PreparedData(str(shapes_records)).stats["captions"]["train"] // batch)
    intervals = -(-total_steps // 15)
    assert 3 <= checkpointed < intervals

    finished = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"Resuming from the checkpoint after interval {checkpointed} " in finished.stdout
    epochs_logged = _history_epochs(output)
    # The second run starts at the first interval that had no checkpoint, not at zero.
    assert epochs_logged[logged_before] == checkpointed
    assert sorted(set(epochs_logged)) == list(range(intervals))
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["training"]["steps"] == intervals * 15  # the optimizer's step counter was restored


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_local_workers_complete_a_short_multi_worker_training(shapes_records, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    output = tmp_path / "run"
    command = _command(shapes_records, output, "--epochs", "1", "--batch-size", "16",
                       "--strategy", "multi_worker", "--set", "train.baselines=False")
    processes = [subprocess.Popen(
        command, env={**_env(), "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "worker done" in outputs[1]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["training"]["steps"] >= 1 and "CIDEr" in metrics["model"]
    # self-critical fine-tuning is single-replica: skipped, and the run says so
    assert metrics["training"]["fine_tuning"] == {"skipped": "runs with --strategy default only"}
    assert "self-critical fine-tuning skipped" in outputs[0]
    assert (output / "workers" / "worker_1").exists()  # the second worker checkpointed apart
    # Synchronous data parallelism: after the all-reduced steps both workers hold the same weights.
    chief, worker = (h5py.File(path / "backup" / "latest.weights.h5", "r")
                     for path in (output, output / "workers" / "worker_1"))
    arrays = {}

    def collect(name, obj):  # (returning a value would stop visititems)
        # Batch-norm moving statistics (vars/2, vars/3) are each worker's own, as in any
        # data-parallel run without SyncBatchNormalization; everything trained must agree.
        moving_statistic = "batch_normalization" in name and name.rsplit("/", 1)[-1] in ("2", "3")
        if isinstance(obj, h5py.Dataset) and not moving_statistic:
            arrays[name] = obj[()]

    chief.visititems(collect)
    assert len(arrays) > 10
    for name, value in arrays.items():
        np.testing.assert_allclose(worker[name][()], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_blind_baseline_stops_early_on_validation_loss_and_is_not_retrained(shapes_records, tmp_path,
                                                                           monkeypatch):
    cfg = train.config_from_args(train.parse_args([
        "--data", str(shapes_records), "--epochs", "4", "--batch-size", "16", *TINY,
        "--set", "train.checkpoint_every=2"]))
    data = PreparedData(str(shapes_records))
    vocab_size = len((shapes_records / "vocab.txt").read_text().splitlines())
    # No interval can lower validation loss by 100 nats: the second one stops training.
    monkeypatch.setattr(captioning, "BLIND_MIN_IMPROVEMENT", 100.0)
    output = tmp_path / "run"
    model = captioning.build_model(cfg, vocab_size, None, blind=True)
    plan = captioning.training_plan(cfg, data, model, blind=True)
    result = trainer.fit(model, plan, cfg.train, str(output), verbose=0)
    assert result["stopped_early"] and result["steps"] == 2 * 2
    with open(output / "blind_history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(row["val_loss"]) > 0 for row in rows)
    # Early stopping says when to stop; keep-best keeps the interval with the lowest loss.
    assert result["best_val_loss"] == pytest.approx(min(float(row["val_loss"]) for row in rows), abs=1e-4)
    # The same command again: the finished baseline is loaded, not trained further.
    again = captioning.build_model(cfg, vocab_size, None, blind=True)
    assert trainer.fit(again, captioning.training_plan(cfg, data, again, blind=True), cfg.train, str(output),
                       verbose=0) == result
    for mine, theirs in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.slow
def test_novel_split_world_reports_both_splits_with_grounding(tmp_path):
    """A built-in world with a test_novel split: metrics.json keeps the test layout and adds a
    test_novel block of the same shape; every system has a grounding block on both splits."""
    args = train.parse_args(["--epochs", "1", "--batch-size", "16", *TINY,
                             "--set", f"data.shapes_root={str(tmp_path / 'shapes')!r}",
                             "--set", "data.shapes_images=80", "--set", "data.shapes_novel_images=20",
                             "--set", "data.min_count=1"])
    result = run_preset(train.config_from_args(args), str(tmp_path / "run"), verbose=0)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == json.loads(json.dumps(result))
    novel = written["test_novel"]
    assert novel["split"] == "test_novel"
    # TINY's two self-critical steps ran after maximum likelihood and are in the training summary
    assert written["training"]["fine_tuning"]["steps"] == 2
    assert (tmp_path / "run" / "self_critical.weights.h5").exists()
    for block in (written, novel):
        for system in (block["model"], block["baselines"]["blind"], block["baselines"]["nearest_neighbour"]):
            assert {"CIDEr", "Bleu_4", "grounding"} <= set(system)
            assert 0.0 <= system["grounding"]["chair_s"] <= 1.0
    assert "perplexity" in novel["model"] and "perplexity" in novel["baselines"]["blind"]
    assert novel["model"]["grounding"]["held_out_pairs_present"] > 0
    results = json.loads((tmp_path / "run" / "results_test_novel.json").read_text())
    assert len(results) == 20 and all({"image_id", "caption"} == set(r) for r in results)
    # the grounding block is a recount of results_test_novel.json against the world's scenes
    from vcaption.metrics import grounding
    scenes, held_out = grounding.load_scenes(str(tmp_path / "shapes" / "world-novel20" / "scenes.json"))
    recount = grounding.grounding_scores({str(r["image_id"]): r["caption"] for r in results}, scenes, held_out)
    assert recount == novel["model"]["grounding"]
    # ... and so is the by-scene-size block, whose CIDEr-D means average back to the split's
    by_size = novel["model"]["by_scene_size"]
    regrouped = grounding.grounding_by_scene_size({str(r["image_id"]): r["caption"] for r in results}, scenes, held_out)
    assert {size: {k: v for k, v in group.items() if k != "CIDEr"} for size, group in by_size.items()} == regrouped
    assert sum(g["CIDEr"] * g["captions"] for g in by_size.values()) / 20 == pytest.approx(novel["model"]["CIDEr"])
    assert "by_scene_size" in novel["baselines"]["nearest_neighbour"]
    for name in ("results_test.json", "caption_grid_test.png", "caption_grid_test_novel.png"):
        assert (tmp_path / "run" / name).exists(), name
