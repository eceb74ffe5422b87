"""Where the video tasks' several systems live in their one shared run directory.

    RUN/<system>.keras                  each trained system ("LRCN RGB" -> lrcn_rgb.keras)
    RUN/<system>_history.csv, _backup/, _best.weights.h5, _training.json, logs/<system>/
                                        its resumable training state (`TrainingPlan.prefix`)
    RUN/model.keras                     the system the run serves: LRCN RGB for activity (the
                                        export's serving_default), the best by CIDEr-D for
                                        description; `python -m vcaption.export --run` reads it
    RUN/table.md                        the printed results table
"""

from __future__ import annotations

import tensorflow as tf

from vcaption.runtime.run_directory import RunDirectory

# What `python -m vcaption.export --run` expects of a finished run, whatever its task.
RUN_MODEL = "model.keras"
TABLE = "table.md"


def system_file_name(system: str) -> str:
    """A system's file-name stem: "mean-pool (NAACL 2015)" -> "mean_pool_naacl_2015"."""
    return "_".join("".join(c if c.isalnum() else " " for c in system.lower()).split())


def system_keras_file(system: str) -> str:
    return f"{system_file_name(system)}.keras"


def system_prefix(system: str) -> str:
    """The `TrainingPlan.prefix` of a system, so that the systems' training states do not collide."""
    return f"{system_file_name(system)}_"


def keep_as_run_model(run: RunDirectory, system: str) -> str:
    """Copies the trained `system`'s .keras file to `RUN_MODEL`; returns its path."""
    path = run.file(RUN_MODEL)
    tf.io.gfile.copy(run.file(system_keras_file(system)), path, overwrite=True)
    return path


def write_table(run: RunDirectory, table: str) -> str:
    """Writes the printed results table as `RUN/table.md`; returns its path."""
    path = run.file(TABLE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(table + "\n")
    return path
