"""The Novel Object Captioner's three data sources and their mixed batches.

* paired image-caption records (`beam_jobs.preprocess` output, as every captioner reads);
* unpaired labelled images: a plain `image<TAB>label,label` list (ILSVRC-style multi-label;
  image paths relative to the list's directory), e.g. the NOC shapes world's
  `noc/image_labels.txt`;
* unpaired text: a plain-text corpus, one sentence per line, e.g. `noc/text_corpus.txt` or any
  real text file.

The caption vocabulary of the records knows only the paired captions' words; the NOC vocabulary
appends the words that only the text corpus has (the held-out objects' names among them), so the
records' ids stay valid and the model can say words no paired caption used.
"""

from __future__ import annotations

import collections
import os

import numpy as np
import tensorflow as tf

from vcaption import images, text

AUTOTUNE = tf.data.AUTOTUNE


def read_corpus(path: str) -> list[str]:
    """The non-empty lines of a plain-text corpus (one sentence per line)."""
    with tf.io.gfile.GFile(path) as f:
        sentences = [line.strip() for line in f]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError(f"text corpus {path} has no sentences")
    return sentences


def extended_vocabulary(caption_words: list[str], corpus_tokens: list[list[str]], min_count: int) -> list[str]:
    """`caption_words` (a records vocabulary, reserved tokens first) followed by the corpus words
    seen at least `min_count` times that it lacks, most frequent first (ties alphabetically)."""
    known = set(caption_words)
    counts = collections.Counter(w for sentence in corpus_tokens for w in sentence if w not in known)
    extra = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return list(caption_words) + extra


def read_image_labels(path: str) -> list[tuple[str, list[str]]]:
    """[(image path, labels)] of an `image<TAB>label,label` list; paths resolved against the list's
    directory. A malformed line or a missing image is a ValueError naming the file and line."""
    base = os.path.dirname(path)
    entries, missing = [], []
    with tf.io.gfile.GFile(path) as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            name, tab, labels = line.partition("\t")
            if not tab or not name:
                raise ValueError(f"{path}:{number}: expected `image<TAB>label,label`, got {line[:80]!r}")
            image = name if os.path.isabs(name) else os.path.join(base, name)
            if not tf.io.gfile.exists(image):
                missing.append(f"{path}:{number}: {image}")
            entries.append((image, [label.strip() for label in labels.split(",") if label.strip()]))
    if missing:
        raise ValueError(f"{len(missing)} labelled images are missing, e.g. {missing[:3]}")
    if not entries:
        raise ValueError(f"image label list {path} has no images")
    return entries


def labelled_images(entries: list[tuple[str, list[str]]], classes: list[str], image_size: int,
                    batch_size: int, seed: int) -> tf.data.Dataset:
    """A repeated, shuffled dataset of (uint8 images [B, S, S, 3], multi-hot labels [B, classes])
    through the package's one image path (`vcaption.images`)."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({label for _, labels in entries for label in labels} - set(index))
    if unknown:
        raise ValueError(f"image labels {unknown} are not among the classes {classes}")
    multi_hot = np.zeros((len(entries), len(classes)), np.float32)
    for row, (_, labels) in enumerate(entries):
        multi_hot[row, [index[label] for label in labels]] = 1.0
    paths = tf.constant([path for path, _ in entries])
    dataset = tf.data.Dataset.from_tensor_slices((paths, multi_hot)).repeat().shuffle(len(entries), seed=seed)
    dataset = dataset.map(lambda path, label: (images.preprocess_image(tf.io.read_file(path), image_size), label),
                          num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True)


def sentences_dataset(sentences: list[str], vocabulary: text.Vocabulary, max_length: int, batch_size: int,
                      seed: int) -> tf.data.Dataset:
    """A repeated, shuffled dataset of (text_in, text_out) int32 [B, T] from sentences: the
    captions' layout (`<start>` w1 .. wn `<end>`, shifted by one, zero-padded)."""
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(sentences)).repeat().shuffle(
        min(len(sentences), 50_000), seed=seed).batch(batch_size, drop_remainder=True)

    def encode(batch):
        ids = tf.cast(vocabulary.encode(batch, max_length).to_tensor(), tf.int32)  # [B, T + 1]
        return ids[:, :-1], ids[:, 1:]

    return dataset.map(encode, num_parallel_calls=AUTOTUNE)


def joint_dataset(paired: tf.data.Dataset | None = None, sentences: tf.data.Dataset | None = None,
                  labelled: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """Mixed batches (Insight 3, joint training): every step holds a paired caption batch, a text
    batch and a labelled-image batch (those given), so that all the losses update the shared
    parameters in the same step. Elements are dicts: "visual", "caption_in", "caption_out";
    "text_in", "text_out"; "labelled_images", "labels"."""
    parts = {}
    if paired is not None:
        parts["paired"] = paired.map(lambda inputs, caption_out: {**inputs, "caption_out": caption_out})
    if sentences is not None:
        parts["text"] = sentences.map(lambda text_in, text_out: {"text_in": text_in, "text_out": text_out})
    if labelled is not None:
        parts["image"] = labelled.map(lambda batch, labels: {"labelled_images": batch, "labels": labels})
    if not parts:
        raise ValueError("joint_dataset needs at least one source")
    return tf.data.Dataset.zip(parts).map(lambda d: {k: v for part in d.values() for k, v in part.items()},
                                          num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
