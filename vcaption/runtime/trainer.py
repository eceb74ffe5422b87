"""The one training routine: every model of every family is fitted by `fit`.

A family's task describes how one model trains as a `TrainingPlan` (its dataset, loss, the
validation figure to keep the best interval by, early stopping); `fit` does the rest the same way
for all of them:

* an explicit step budget: `epochs` × `steps_per_epoch` optimizer steps, cut into checkpoint
  intervals of at most `train.checkpoint_every` steps (Keras "epochs" over a repeated dataset);
* the optimizer of `train.optimizer` with a cosine-decayed learning rate, built in the model's
  distribution strategy scope;
* resume after a crash (even `kill -9`): a checkpoint after every interval (`backup.ResumableBackup`),
  so the step counter continues where it stopped, from the interval before when a kill tore the
  last checkpoint; a model whose training finished is loaded, not retrained;
* keep-best: the interval with the best `monitor` (a figure a callback or `validation_data`
  puts in the interval's logs) is saved and loaded at the end;
* `<prefix>history.csv`, TensorBoard logs under `logs/`, and under `MultiWorkerMirroredStrategy`
  the custom loop of `distributed_loop` (Keras's `fit` fails there).

Example:
```python
plan = TrainingPlan(name="lrcn_2f", dataset=train, steps_per_epoch=1125,
                    loss=MaskedCaptionLoss(), callbacks=[validation_cider], monitor="val_CIDEr")
summary = fit(model, plan, cfg.train, run.path)   # {"steps", "seconds", "best_val_CIDEr"}
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Sequence

import keras
import tensorflow as tf

from vcaption import config as config_lib
from vcaption.runtime.backup import ResumableBackup, save_weights_atomically, write_json_atomically
from vcaption.runtime.distributed_loop import fit_distributed


@dataclasses.dataclass
class TrainingPlan:
    """How one model trains.

    Args:
        name: printed in progress lines.
        dataset: a repeated dataset of (inputs, targets) batches.
        steps_per_epoch: optimizer steps of one epoch (a pass over the training examples).
        prefix: file-name prefix of this model's state in the run directory ("" for the main
            model, "blind_" for a baseline...), so that several models share one run directory.
        loss: the compiled loss (None for models that add their own, e.g. the ranker).
        metrics: compiled metrics.
        validation_data: scored by Keras after each interval (logs "val_<metric>").
        callbacks: callbacks that put validation figures in the interval's logs; they run before
            keep-best, early stopping and the CSV history.
        monitor: the logged figure that picks the kept interval; None keeps the last weights.
        mode: "max" or "min": which way `monitor` improves.
        early_stopping_min_delta: stop once `monitor` improves by less than this in an interval.
    """

    name: str
    dataset: Any
    steps_per_epoch: int
    prefix: str = ""
    loss: Any = None
    metrics: Sequence = ()
    validation_data: Any = None
    callbacks: Sequence = ()
    monitor: str | None = None
    mode: str = "max"
    early_stopping_min_delta: float | None = None


def make_optimizer(cfg: config_lib.TrainConfig, total_steps: int):
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(total_steps, 1), alpha=0.1)
    # clipvalue: element-wise gradient clipping, as the papers clip each gradient component at 5.
    common = dict(learning_rate=schedule, clipvalue=cfg.clip_value or None,
                  weight_decay=cfg.weight_decay or None)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**common)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=cfg.momentum, **common)
    raise ValueError(f"train.optimizer must be adam, rmsprop or sgd, got {cfg.optimizer!r}")


def checkpoint_intervals(total_steps: int, checkpoint_every: int) -> tuple[int, int]:
    """(intervals, steps per interval): equal intervals of at most `checkpoint_every` steps that
    add up to `total_steps` (up to rounding). Keras runs them as "epochs" over a repeated dataset."""
    intervals = math.ceil(total_steps / checkpoint_every)
    return intervals, math.ceil(total_steps / intervals)


def steps_per_execution(requested: int, interval: int) -> int:
    """The largest divisor of `interval` that is at most `requested`: Keras runs whole executions,
    so a non-divisor would stretch every checkpoint interval to the next multiple."""
    requested = max(1, min(int(requested), interval))
    return max(d for d in range(1, requested + 1) if interval % d == 0)


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, math.ceil(examples / batch_size))


def optimizer_steps(model) -> int:
    """The optimizer's step counter (a MirroredVariable under tf.distribute, hence the conversion)."""
    return int(tf.convert_to_tensor(model.optimizer.iterations.value))


class KeepBest(keras.callbacks.Callback):
    """Saves the weights of the interval with the best `monitor` to `path` (and `path`.json),
    remembering the best value across restarts of the same run."""

    def __init__(self, path: str, monitor: str, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = -math.inf if mode == "max" else math.inf
        if os.path.exists(path + ".json"):
            with open(path + ".json") as f:
                self.best = json.load(f)[monitor]

    def better(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(value) or not self.better(value):
            return
        self.best = float(value)
        save_weights_atomically(self.model, self.path)
        write_json_atomically(self.path + ".json", {self.monitor: self.best, "interval": epoch + 1})


def fit(model, plan: TrainingPlan, cfg: config_lib.TrainConfig, output: str, verbose: int = 1) -> dict:
    """Trains `model` by `plan` in the run directory `output` (resumable); returns the summary
    {"steps", "seconds", "best_<monitor>"} (also `<prefix>training.json`).

    The model ends with the kept weights: the best interval by `plan.monitor`, else the last.
    """
    os.makedirs(output, exist_ok=True)
    best_path = os.path.join(output, f"{plan.prefix}best.weights.h5")
    summary_path = os.path.join(output, f"{plan.prefix}training.json")
    if os.path.exists(summary_path) and os.path.exists(best_path):
        # Finished in an earlier run of the same command (its backup may stop short of the last
        # interval when it stopped early, so Keras alone would train it further).
        model.load_weights(best_path)
        with open(summary_path) as f:
            return json.load(f)
    total_steps = plan.steps_per_epoch * cfg.epochs
    intervals, interval = checkpoint_intervals(total_steps, cfg.checkpoint_every)
    with model.distribute_strategy.scope():  # optimizer slots live where the model's variables do
        model.compile(optimizer=make_optimizer(cfg, total_steps), loss=plan.loss, metrics=list(plan.metrics),
                      steps_per_execution=steps_per_execution(cfg.steps_per_execution, interval))
    callbacks = list(plan.callbacks)
    keep_best = None
    if plan.monitor:
        keep_best = KeepBest(best_path, plan.monitor, plan.mode)
        callbacks.append(keep_best)
    if plan.early_stopping_min_delta is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=plan.monitor, mode=plan.mode, patience=1,
                                                       min_delta=plan.early_stopping_min_delta))
    log_name = plan.prefix.rstrip("_") or "model"
    # Last, so that an interval's checkpoint is written after its log row and best weights: a
    # crash in between then re-runs that interval instead of losing its record.
    callbacks += [keras.callbacks.TensorBoard(os.path.join(output, "logs", log_name)),
                  keras.callbacks.CSVLogger(os.path.join(output, f"{plan.prefix}history.csv"), append=True),
                  ResumableBackup(os.path.join(output, f"{plan.prefix}backup"), interval, intervals)]
    print(f"{plan.name}: {cfg.epochs} epochs of {plan.steps_per_epoch} steps (batch {cfg.batch_size}) = "
          f"{intervals} checkpoint intervals of {interval} steps")
    start = time.perf_counter()
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        if plan.validation_data is not None:
            raise ValueError(f"{plan.name}: validation_data is not supported under multi_worker; "
                             "compute validation figures in a callback")
        fit_distributed(model, plan.dataset, intervals, interval, callbacks, verbose=verbose)
    else:
        # shuffle=False: the datasets shuffle themselves (Keras would warn it cannot shuffle them).
        model.fit(plan.dataset, epochs=intervals, steps_per_epoch=interval, callbacks=callbacks, shuffle=False,
                  validation_data=plan.validation_data, verbose=verbose)
    summary = {"steps": optimizer_steps(model), "seconds": round(time.perf_counter() - start, 1)}
    if keep_best is not None:
        best = keep_best.best
        summary[f"best_{plan.monitor}"] = None if math.isinf(best) else round(float(best), 4)
        if os.path.exists(best_path):
            model.load_weights(best_path)
    if not os.path.exists(best_path):
        save_weights_atomically(model, best_path)  # no monitor: the last interval's weights are the kept ones
    if plan.early_stopping_min_delta is not None:
        summary["stopped_early"] = summary["steps"] < total_steps
    write_json_atomically(summary_path, summary)
    return summary
