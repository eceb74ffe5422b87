"""Quiet by default: what a command prints is its own progress and results.

`configure(verbose=False)` silences what libraries print that says nothing to a user of ours:
TensorFlow's Python-side INFO/WARNING log lines, absl's, and Keras/TensorFlow `UserWarning`s
(e.g. about retracing); TensorFlow's C++ lines are silenced at import (`vcaption/__init__.py`).
`--verbose` on any command brings all of them back.
"""

from __future__ import annotations

import logging
import os
import warnings


def configure(verbose: bool = False) -> None:
    if verbose:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        return
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(keras|tensorflow)\b.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def progress_verbosity(quiet: bool, is_terminal: bool) -> int:
    """Keras `verbose`: a live progress bar on a terminal, one line per checkpoint interval in logs
    and CI (or with --quiet)."""
    return 2 if quiet or not is_terminal else 1
