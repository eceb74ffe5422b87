"""A training run's directory: everything needed to resume, evaluate and export it, in one place.

    RUN/config.json     the resolved ExperimentConfig, with absolute paths ("data_dir", "run_dir")
    RUN/data/           the preprocessing output's assets (vocabulary, counts, answers, labels,
                        stats): a `PreparedData` without records, so the run exports after the
                        preprocessing output is gone
    RUN/metrics.json    test metrics of the model and of its baselines
    RUN/model.keras     the trained model (other systems: <name>.keras)
    RUN/backup/, history.csv, logs/, best.weights.h5(.json)   resumable training state

A run directory is self-contained: `python -m vcaption.export --run RUN` works from any working
directory and on any machine that has RUN (gs:// included).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from vcaption.config import ExperimentConfig
from vcaption.runtime.prepared_data import PreparedData, absolute

CONFIG = "config.json"
METRICS = "metrics.json"
DATA = "data"


class RunDirectory:
    """Args:
        path: the run directory (created when missing); stored absolute.
    """

    def __init__(self, path: str):
        self.path = absolute(path)
        tf.io.gfile.makedirs(self.path)

    def __repr__(self) -> str:
        return f"RunDirectory({self.path!r})"

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def exists(self, name: str) -> bool:
        return tf.io.gfile.exists(self.file(name))

    @property
    def data(self) -> PreparedData:
        """The run's copy of its preprocessing output's assets."""
        return PreparedData(self.file(DATA))

    def keep_assets(self, data: PreparedData) -> PreparedData:
        """Copies `data`'s assets into `RUN/data/` (once per run start); returns the copy."""
        return data.copy_assets(self.file(DATA))

    def write_config(self, cfg: ExperimentConfig, data: PreparedData | None = None, **extra) -> dict:
        """Writes config.json: the config with absolute `data_dir` and `run_dir`; returns it."""
        config = cfg.to_dict() | {"run_dir": self.path, **extra}
        if data is not None:
            config["data_dir"] = data.directory
        self.write_json(CONFIG, config)
        return config

    def read_config(self) -> dict:
        return self.read_json(CONFIG)

    def write_metrics(self, metrics: dict) -> str:
        return self.write_json(METRICS, metrics)

    def read_json(self, name: str):
        with tf.io.gfile.GFile(self.file(name)) as f:
            return json.load(f)

    def write_json(self, name: str, value) -> str:
        # Written whole then renamed: a crash never leaves half a metrics.json behind.
        path = self.file(name)
        with tf.io.gfile.GFile(path + ".tmp", "w") as f:
            json.dump(value, f, indent=1)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        return path
