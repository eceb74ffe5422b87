"""The object classifier's labels: what is where in an image, from its region phrases and boxes.

Each image's target is multi-hot over `LabelVocabulary`: every region phrase it shows ("small red
circle") and the phrase's endings ("red circle", "circle"), each anywhere and in the 3x3 grid cell
of the box centre ("red circle @ top left"). The vocabulary is ranked from the training records
(`LabelVocabulary.from_records`); targets are built in graph, so `make_dataset` decodes a split's
records straight into (image, targets) batches.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import images, records, text
from vcaption.runtime.prepared_data import PreparedData

GRID = 3  # the label names a region's cell in a GRID x GRID grid over the image
# A phrase's last 1..ENDING_WORDS words are labels too. English noun phrases end with their head:
# "small red circle" -> "circle", "red circle". Without them the labels would only name whole
# phrases, and "small red circle" and "large red circle" would share no label that says "red
# circle". Measured on the 18,000-image world, the VQA model on such an encoder's frozen features
# scored 87.9% on the test questions, against 91.5% with the endings (they ask about colour and
# shape, never size).
ENDING_WORDS = 3
CELL_NAMES = ("top left", "top", "top right", "left", "center", "right",
              "bottom left", "bottom", "bottom right")


def phrase_and_endings(phrases: tf.Tensor) -> tf.Tensor:
    """In graph: raw phrases string[R] -> normalized [phrase, last word, ..., last ENDING_WORDS
    words] string[R, 1 + ENDING_WORDS] (a short phrase repeats itself)."""
    normalized = text.normalize(phrases)
    words = tf.strings.split(normalized)  # [R, (words)]
    endings = [tf.strings.reduce_join(words[:, -k:], axis=1, separator=" ")
               for k in range(1, ENDING_WORDS + 1)]
    return tf.stack([normalized, *endings], axis=1)


def region_phrases_and_boxes(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """In graph: one serialized record -> its raw region phrases string[R] and boxes float[R, 4]."""
    parsed = records.parse_caption_example(serialized)
    return parsed["region_phrases"], parsed["region_boxes"]


class LabelVocabulary:
    """Labels of `P` phrases: label `p * (1 + GRID²)` is phrase p anywhere in the image, label
    `p * (1 + GRID²) + 1 + cell` is phrase p with its box centre in `cell` (row-major, 0 = top left).
    A region carries its phrase's labels and those of its endings (`phrase_and_endings`).

    Args:
        phrases: normalized phrases and endings (`text.normalize`), most frequent first.
    """

    PER_PHRASE = 1 + GRID * GRID

    def __init__(self, phrases):
        self.phrases = list(phrases)
        if not self.phrases:
            raise ValueError("no region phrase occurs often enough to be a label")
        self.size = len(self.phrases) * self.PER_PHRASE
        # Built here, eagerly: tf.data map functions can capture a table but not create one.
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(self.phrases),
                                                tf.range(len(self.phrases), dtype=tf.int32)),
            default_value=-1)

    def names(self) -> list[str]:
        """Readable label names, by index ("small red circle", "small red circle @ top left")."""
        return [name for phrase in self.phrases
                for name in [phrase, *(f"{phrase} @ {cell}" for cell in CELL_NAMES)]]

    def anywhere(self) -> np.ndarray:
        """Indices of the "phrase anywhere" labels."""
        return np.arange(len(self.phrases)) * self.PER_PHRASE

    def targets(self, phrases: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
        """In graph: one image's region phrases string[R] (raw) and normalized boxes float[R, 4]
        (ymin, xmin, ymax, xmax) -> multi-hot float32[L]; phrases that are not labels are skipped."""
        ids = self._table.lookup(phrase_and_endings(phrases))  # [R, E], -1 when not a label
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0  # [R, 2] (y, x) in 0..1
        row_col = tf.clip_by_value(tf.cast(tf.floor(centre * GRID), tf.int32), 0, GRID - 1)
        cell = tf.broadcast_to(row_col[:, :1] * GRID + row_col[:, 1:], tf.shape(ids))  # [R, E]
        ids, cell = tf.reshape(ids, [-1]), tf.reshape(cell, [-1])
        known = ids >= 0
        base = tf.boolean_mask(ids * self.PER_PHRASE, known)
        indices = tf.concat([base, base + 1 + tf.boolean_mask(cell, known)], axis=0)  # [2 R']
        counts = tf.scatter_nd(indices[:, tf.newaxis], tf.ones_like(indices, tf.float32),
                               [self.size])  # a label that several regions (or endings) give counts once
        return tf.minimum(counts, 1.0)

    @classmethod
    def from_records(cls, data: PreparedData, max_phrases: int,
                     min_count: int) -> tuple["LabelVocabulary", dict]:
        """The `max_phrases` most frequent normalized phrases and endings of the train split with
        at least `min_count` regions (ties: alphabetical), and {"regions", "regions_outside_labels"}.

        Args:
            data: a `beam_jobs.preprocess --format vg` output (its train split is read).
            max_phrases: at most this many phrases and endings become labels.
            min_count: a phrase or ending needs this many training regions.
        """
        def region_names():  # each training region's set of phrase and endings, streamed
            serialized = data_lib.read_records(data.split_pattern("train"), shuffle=False)
            candidates = serialized.map(lambda s: phrase_and_endings(region_phrases_and_boxes(s)[0]),
                                        num_parallel_calls=tf.data.AUTOTUNE)
            for image in candidates.as_numpy_iterator():  # [R, E]
                for row in image:
                    yield {p.decode("utf-8") for p in row if p}

        counts, regions = collections.Counter(), 0
        for names in region_names():
            counts.update(names)
            regions += 1
        ranked = sorted((p for p, n in counts.items() if n >= min_count),
                        key=lambda p: (-counts[p], p))[:max_phrases]
        kept = set(ranked)
        outside = sum(1 for names in region_names() if not names & kept)  # a second pass, not a list
        return cls(ranked), {"regions": regions, "regions_outside_labels": outside}

    def write(self, path: str) -> None:
        """Writes the label names (`names`), one a line, to `path` (local or gs://)."""
        with tf.io.gfile.GFile(path, "w") as f:
            f.write("\n".join(self.names()) + "\n")


def make_dataset(data: PreparedData, split: str, labels: LabelVocabulary, image_size: int,
                 batch_size: int, training: bool = False, seed: int | None = None,
                 repeat: bool = False) -> tf.data.Dataset:
    """(uint8 images [B, S, S, 3], multi-hot targets float32 [B, L]) of one split, decoded in graph.

    Args:
        data: a `beam_jobs.preprocess --format vg` output.
        split: "train", "val" or "test".
        labels: the label vocabulary the targets are over.
        image_size: side S the images are resized to.
        batch_size: images per batch.
        training: shuffle (records and examples), nondeterministic order.
        seed: shuffling seed.
        repeat: repeat forever (for step-based training).
    """
    def to_element(serialized):
        parsed = records.parse_caption_example(serialized)
        image = images.preprocess_image(parsed["image_jpeg"], image_size)
        return image, labels.targets(parsed["region_phrases"], parsed["region_boxes"])

    serialized = data_lib.read_records(data.split_pattern(split), shuffle=training, seed=seed)
    if training:
        serialized = serialized.shuffle(4096, seed=seed)
    if repeat:
        serialized = serialized.repeat()
    elements = serialized.map(to_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    return elements.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def targets_frequency(data: PreparedData, labels: LabelVocabulary) -> np.ndarray:
    """Each label's fraction of training images (the label-prior baseline's scores), float[L]."""
    total, images_seen = np.zeros(labels.size), 0
    serialized = data_lib.read_records(data.split_pattern("train"), shuffle=False)
    targets = serialized.map(lambda s: labels.targets(*region_phrases_and_boxes(s)),
                             num_parallel_calls=tf.data.AUTOTUNE)
    for batch in targets.batch(1024).as_numpy_iterator():
        total += batch.sum(axis=0)
        images_seen += len(batch)
    return total / max(images_seen, 1)
