"""Resumable training state (`<run>/<prefix>backup/`) that survives a checkpoint torn by a kill.

Keras's `BackupAndRestore` rewrites `latest.weights.h5` and `training_metadata.json` in place at
the end of every checkpoint interval. A `kill -9` during a write leaves a truncated file, and
Keras then fails every later run (`OSError: truncated file`) until the user deletes `backup/`.
`ResumableBackup` saves as Keras does with `double_checkpoint=True`: before it writes a new pair
(weights + metadata) it copies the current one to `*.bkp`, so a kill at any moment leaves at least
one complete pair on disk. It restores more carefully than Keras:

1. the latest pair, if its weights and metadata both load;
2. else the previous pair (one interval earlier), copied back over the latest;
3. else it says so, puts back the model's and optimizer's initial values, removes the unusable
   files and starts from the first interval.

Keras's own fallback covers only a weights file that fails to open (`OSError`). A torn metadata
file (`JSONDecodeError`), weights without metadata (a kill between the two writes of the very
first checkpoint) or a torn previous copy still stop it, and it re-raises when there is no
previous copy.

Example:
```python
backup = ResumableBackup(os.path.join(run_dir, "backup"), steps_per_interval=25, intervals=4)
model.fit(dataset, epochs=4, steps_per_epoch=25, callbacks=[..., backup])  # last: see `fit`
```
"""

from __future__ import annotations

import json
import os
import shutil

import keras

# What a torn or missing file raises: OSError from h5py ("truncated file", "file signature not
# found") and from open(); ValueError from json (JSONDecodeError) and from Keras on weights that
# do not fit the model; KeyError/TypeError from metadata without a usable "epoch".
UNUSABLE_CHECKPOINT = (OSError, ValueError, KeyError, TypeError)


def save_weights_atomically(model, path: str) -> None:
    """`model.save_weights(path)` through a temporary file renamed over `path`: a kill leaves the
    old file or the new one, never a torn one (the rename is atomic on one file system)."""
    partial = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))  # still *.weights.h5
    model.save_weights(partial)
    os.replace(partial, path)


def write_json_atomically(path: str, value) -> None:
    """`json.dump(value)` to `path` through a temporary file renamed over it (see above)."""
    partial = os.path.join(os.path.dirname(path), ".partial-" + os.path.basename(path))
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(partial, path)


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` (double checkpoint, kept after training) that resumes from the last
    complete checkpoint and, when none is usable, starts over with a message instead of failing.

    Args:
        backup_dir: the directory of the checkpoints (its own, as Keras requires).
        steps_per_interval: optimizer steps per checkpoint interval (for the printed step).
        intervals: checkpoint intervals of the whole training (for the printed progress).
    """

    def __init__(self, backup_dir: str, steps_per_interval: int, intervals: int):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)
        self.steps_per_interval, self.intervals = steps_per_interval, intervals

    def on_train_begin(self, logs=None):
        pairs = [(self._weights_path, self._training_metadata_path),
                 (self._prev_weights_path, self._prev_training_metadata_path)]
        files = [path for pair in pairs for path in pair if os.path.exists(path)]
        if not files:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its slots are in the files
        initial = self._state()
        problems = []
        for weights, metadata in pairs:
            if not (os.path.exists(weights) or os.path.exists(metadata)):
                continue
            try:
                interval = self._restore(weights, metadata)
            except UNUSABLE_CHECKPOINT as error:
                problems.append(f"{os.path.basename(weights)}: {type(error).__name__}: {error}")
                self._put_back(initial)  # a file that failed half-way may have set some variables
                continue
            if problems:
                print(f"The latest checkpoint in {self.backup_dir} is unusable ({problems[0]}); "
                      "using the one before it")
            print(f"Resuming from the checkpoint after interval {interval} "
                  f"(step {interval * self.steps_per_interval}) of {self.intervals}")
            return
        print(f"warning: no usable checkpoint in {self.backup_dir} ({'; '.join(problems)}); "
              "removing it and training from the first interval")
        for path in files:
            os.remove(path)

    def _restore(self, weights: str, metadata: str) -> int:
        """Loads one (weights, metadata) pair; returns the completed intervals it records."""
        with open(metadata, encoding="utf-8") as f:
            interval = int(json.load(f)["epoch"])
        if not os.path.exists(weights):
            raise FileNotFoundError(f"{weights} is missing")
        if weights != self._weights_path:
            # Keras loads only files named *.weights.h5; the latest pair is the next save's
            # previous copy, so it must be whole again anyway.
            shutil.copyfile(weights, self._weights_path)
            shutil.copyfile(metadata, self._training_metadata_path)
        self.model.load_weights(self._weights_path)
        self.model._initial_epoch = interval
        return interval

    def _state(self) -> list:
        variables = list(self.model.variables)
        if self.model.optimizer is not None:
            variables += list(self.model.optimizer.variables)
        return [(v, v.numpy()) for v in variables]

    @staticmethod
    def _put_back(state: list) -> None:
        for variable, value in state:
            variable.assign(value)
