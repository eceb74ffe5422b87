"""The one training routine: step budget, checkpoint intervals, keep-best, finished runs not retrained."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from vcaption.config import TrainConfig
from vcaption.runtime import trainer


@pytest.mark.parametrize("total, every, expected", [(100, 30, (4, 25)), (90, 30, (3, 30)), (5, 300, (1, 5))])
def test_checkpoint_intervals_split_the_budget_evenly(total, every, expected):
    assert trainer.checkpoint_intervals(total, every) == expected


@pytest.mark.parametrize("requested, interval, expected", [
    (10, 300, 10),   # a divisor: as asked
    (10, 1125, 9),   # the objects preset's interval: the largest divisor below 10
    (10, 7, 7),      # never more than the interval
    (10, 13, 1),     # a prime interval: one step at a time
    (0, 300, 1),     # at least one step
])
def test_steps_per_execution_divides_the_checkpoint_interval(requested, interval, expected):
    got = trainer.steps_per_execution(requested, interval)
    assert got == expected and interval % got == 0


class _LogsStep(keras.callbacks.Callback):
    """Logs a made-up validation figure: 3, 5, 4 at the end of intervals 1, 2, 3."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = [3.0, 5.0, 4.0][epoch]


def _model_and_plan(**plan_args):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    x = tf.random.stateless_normal([32, 2], seed=[1, 2])
    dataset = tf.data.Dataset.from_tensor_slices((x, tf.reduce_sum(x, 1, keepdims=True))).batch(8).repeat()
    return model, trainer.TrainingPlan("tiny", dataset, steps_per_epoch=4, loss="mse", **plan_args)


def test_fit_keeps_the_best_interval_and_does_not_retrain_a_finished_model(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, checkpoint_every=4)
    model, plan = _model_and_plan(callbacks=[_LogsStep()], monitor="val_score")
    summary = trainer.fit(model, plan, cfg, str(tmp_path), verbose=0)
    assert summary["steps"] == 12 and summary["best_val_score"] == 5.0
    assert json.loads((tmp_path / "best.weights.h5.json").read_text())["interval"] == 2
    with open(tmp_path / "history.csv") as f:
        assert [float(r["val_score"]) for r in csv.DictReader(f)] == [3.0, 5.0, 4.0]
    kept = [w.copy() for w in model.get_weights()]
    again, plan = _model_and_plan(callbacks=[_LogsStep()], monitor="val_score")
    assert trainer.fit(again, plan, cfg, str(tmp_path), verbose=0) == summary
    for mine, theirs in zip(again.get_weights(), kept):
        np.testing.assert_array_equal(mine, theirs)


def test_fit_without_a_monitor_keeps_the_last_weights(tmp_path):
    model, plan = _model_and_plan(prefix="other_")
    summary = trainer.fit(model, plan, TrainConfig(epochs=2, batch_size=8, checkpoint_every=2), str(tmp_path),
                          verbose=0)
    assert summary["steps"] == 8 and set(summary) == {"steps", "seconds"}
    assert (tmp_path / "other_best.weights.h5").exists() and (tmp_path / "other_history.csv").exists()


def test_keep_best_refuses_an_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        trainer.KeepBest(str(tmp_path / "w.h5"), "val_loss", "lowest")


# --- resume after a checkpoint torn by a kill --------------------------------------------------------

class _KilledAt(keras.callbacks.Callback):
    """Stops training like a kill would, at the start of interval `epoch` (its checkpoints are on disk)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("killed")


def _interrupted_run(output, killed_at: int):
    """A 3-interval run (4 steps each) stopped after `killed_at` intervals were checkpointed."""
    cfg = TrainConfig(epochs=3, batch_size=8, checkpoint_every=4)
    model, plan = _model_and_plan(callbacks=[_KilledAt(killed_at)])
    with pytest.raises(RuntimeError, match="killed"):
        trainer.fit(model, plan, cfg, str(output), verbose=0)
    return cfg


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _uninterrupted_weights(tmp_path):
    model, plan = _model_and_plan()
    trainer.fit(model, plan, TrainConfig(epochs=3, batch_size=8, checkpoint_every=4), str(tmp_path / "whole"),
                verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("damage", ["truncated weights", "empty weights", "torn metadata"])
def test_a_torn_last_checkpoint_resumes_from_the_one_before(tmp_path, capsys, damage):
    output = tmp_path / "run"
    cfg = _interrupted_run(output, killed_at=2)
    backup = output / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    if damage == "truncated weights":
        _truncate(backup / "latest.weights.h5")
    elif damage == "empty weights":
        (backup / "latest.weights.h5").write_bytes(b"")
    else:
        (backup / "training_metadata.json").write_text('{"epoch": ')
    capsys.readouterr()
    model, plan = _model_and_plan()
    summary = trainer.fit(model, plan, cfg, str(output), verbose=0)
    printed = capsys.readouterr().out
    assert "latest checkpoint" in printed and "unusable" in printed
    assert "Resuming from the checkpoint after interval 1 (step 4) of 3" in printed
    assert summary["steps"] == 12
    with open(output / "history.csv") as f:  # interval 1 is trained again from its start
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 1, 2]
    # One pass over the 4 batches per interval: resuming at interval 1 sees the same batches as an
    # uninterrupted run, so it ends with the same weights.
    for resumed, whole in zip(model.get_weights(), _uninterrupted_weights(tmp_path)):
        np.testing.assert_allclose(resumed, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("killed_at", [1, 2])
def test_no_usable_checkpoint_starts_over_with_a_warning(tmp_path, capsys, killed_at):
    output = tmp_path / "run"
    cfg = _interrupted_run(output, killed_at=killed_at)
    backup = output / "backup"
    _truncate(backup / "latest.weights.h5")
    if killed_at == 2:  # the previous copy is torn too
        _truncate(backup / "latest.weights.h5.bkp")
    else:
        assert not (backup / "latest.weights.h5.bkp").exists()  # the first checkpoint has no previous one
    capsys.readouterr()
    model, plan = _model_and_plan()
    summary = trainer.fit(model, plan, cfg, str(output), verbose=0)
    printed = capsys.readouterr().out
    assert "warning: no usable checkpoint" in printed and "training from the first interval" in printed
    assert "Resuming" not in printed
    assert summary["steps"] == 12
    for restarted, whole in zip(model.get_weights(), _uninterrupted_weights(tmp_path)):
        np.testing.assert_allclose(restarted, whole, rtol=1e-5, atol=1e-6)
    # The run's own checkpoints replaced the torn ones: a later rerun would resume cleanly.
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 3


def test_weights_and_summaries_are_replaced_whole_or_not_at_all(tmp_path):
    from vcaption.runtime import backup

    model, _ = _model_and_plan()
    path = tmp_path / "best.weights.h5"
    backup.save_weights_atomically(model, str(path))
    before = path.read_bytes()

    def killed_mid_write(filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(before[:100])
        raise KeyboardInterrupt

    model.save_weights = killed_mid_write
    with pytest.raises(KeyboardInterrupt):
        backup.save_weights_atomically(model, str(path))
    assert path.read_bytes() == before  # the torn bytes went to the partial file only
    backup.write_json_atomically(str(tmp_path / "t.json"), {"steps": 3})
    assert json.loads((tmp_path / "t.json").read_text()) == {"steps": 3}
