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
