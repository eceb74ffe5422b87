"""One object for a `beam_jobs.preprocess` output directory, read by training, evaluation and export.

TF Transform's `TFTransformOutput` is the model: the preprocessing job writes a directory, and
everything downstream reads it through one object instead of joining file names by hand. The
files are read with `tf.io.gfile`, so the same code reads a local directory and `gs://...`.

    DIR/vocab.txt, vocab_counts.txt   word vocabulary and its training counts
    DIR/answers.txt                   VQA answer vocabulary (top K training answers)
    DIR/labels.txt                    activity labels (video)
    DIR/stats.json                    examples per split, settings, dead letters
    DIR/{split}-*.tfrecord*           the records

A training run copies the small text files (everything but the records) into its own directory
(`RunDirectory.keep_assets`), so that the run evaluates and exports after `DIR` is gone; the copy
is a `PreparedData` too, without records.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import tensorflow as tf

from vcaption import text

VOCABULARY = "vocab.txt"
WORD_COUNTS = "vocab_counts.txt"
ANSWERS = "answers.txt"
LABELS = "labels.txt"
STATS = "stats.json"
# The vocabularies a model is trained with: what a derived output (features) carries along.
VOCABULARIES = (VOCABULARY, WORD_COUNTS, ANSWERS, LABELS)
# What a run keeps of its data: every file the model's export or evaluation needs, no records.
ASSETS = (*VOCABULARIES, STATS)


def absolute(path: str) -> str:
    """`path` made absolute, unless it is a URL such as gs://bucket/dir (already absolute)."""
    return path if "://" in path else os.path.abspath(path)


class PreparedData:
    """A preprocessing output directory.

    Args:
        directory: the `--output` of `beam_jobs.preprocess` (local or gs://), or a run's copy of
            its assets (`RunDirectory.data`).

    Example:
    ```python
    data = PreparedData("data/shapes18k/records-64")
    vocab = data.vocabulary()                  # text.Vocabulary of vocab.txt
    steps = data.stats["captions"]["train"] // 64
    pattern = data.split_pattern("train")      # for vcaption.data.read_records
    ```
    """

    def __init__(self, directory: str):
        self.directory = absolute(directory)

    def __repr__(self) -> str:
        return f"PreparedData({self.directory!r})"

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def exists(self, name: str) -> bool:
        return tf.io.gfile.exists(self.path(name))

    def read_text(self, name: str) -> str:
        if not self.exists(name):
            raise FileNotFoundError(f"{self.path(name)} not found: is {self.directory} a "
                                    "beam_jobs.preprocess output (or a run's data/ copy)?")
        with tf.io.gfile.GFile(self.path(name)) as f:
            return f.read()

    @functools.cached_property
    def stats(self) -> dict:
        return json.loads(self.read_text(STATS))

    @property
    def vocabulary_path(self) -> str:
        return self.path(VOCABULARY)

    def vocabulary(self) -> text.Vocabulary:
        return text.Vocabulary(self.vocabulary_path)

    def word_counts(self) -> np.ndarray | None:
        """Training count of each vocabulary entry (Karpathy & Fei-Fei's b_o init), if written."""
        if not self.exists(WORD_COUNTS):
            return None
        return np.array([float(line) for line in self.read_text(WORD_COUNTS).split()])

    @property
    def answers_path(self) -> str:
        return self.path(ANSWERS)

    def answers(self) -> list[str]:
        return self.read_text(ANSWERS).splitlines()

    def labels(self) -> list[str]:
        return self.read_text(LABELS).splitlines()

    def split_pattern(self, split: str) -> str:
        """The shard pattern of one split (`vcaption.data.read_records` reads it)."""
        return self.path(f"{split}-*.tfrecord*")

    def is_complete(self) -> bool:
        """True when the job finished: stats.json is written last."""
        return self.exists(STATS)

    def copy_assets(self, destination: str, names=ASSETS) -> "PreparedData":
        """Copies the small files `names` (those present) to `destination`; returns that copy."""
        tf.io.gfile.makedirs(destination)
        for name in names:
            if self.exists(name):
                tf.io.gfile.copy(self.path(name), os.path.join(destination, name), overwrite=True)
        return PreparedData(destination)
