"""A split embedded by a trained ranker, and its image-sentence score matrix (Eq. 8).

Validation during training, the test evaluation, the alignment evaluation and the region-snippet
data of region captioning all start from the same thing: every image's region vectors v_i and
every sentence's word vectors s_t. They live here, apart from the trainer and the alignment
code, so that both import them and neither imports the other.

Example:
```python
embedded = embed_split(model, data.directory, "test", max_regions=5)
scores = score_matrix(model, embedded)   # [N images, 5N sentences]
```
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vcaption import text
from vcaption.metrics import retrieval
from vcaption.retrieval import data as ranker_data

SENTENCES_PER_IMAGE = retrieval.SENTENCES_PER_IMAGE
# Sentences embedded or scored per call: bounds memory on the 5K test protocol.
SENTENCE_CHUNK = 500


def load_split(data_dir: str, split: str, image_size: int, max_regions: int = 1, batch_size: int = 100,
               limit: int | None = None) -> dict:
    """Every image of a split with >= 5 sentences (first 5 kept), in record order: what any
    retrieval system scores, so that all of them rank the same images and sentences.

    Args:
        data_dir: a `beam_jobs.preprocess` output directory (region boxes used if the records have them).
        split: the split to read.
        image_size: side S of the decoded images.
        max_regions: R, boxes per image including the whole image.
        batch_size: images per tf.data batch.
        limit: stop after this many images (None: the whole split).

    Returns:
        {"image_ids": [N], "images": uint8 [N, S, S, 3], "boxes": [N, R, 4], "word_ids": int32
         [5N, T] (no <start>/<end>, 0-padded), "texts": [5N] normalized sentences, "skipped":
         image ids with fewer than 5 sentences}; sentence j belongs to image j // 5.
    """
    out = {"image_ids": [], "boxes": [], "images": [], "word_ids": [], "texts": [], "skipped": []}
    count = 0
    for batch in ranker_data.eval_dataset(data_dir, split, batch_size, image_size, max_regions):
        sentences = batch["words"].row_lengths().numpy()
        keep = np.flatnonzero(sentences >= SENTENCES_PER_IMAGE)
        ids = [i.decode() for i in batch["image_id"].numpy()]
        out["skipped"] += [ids[i] for i in np.flatnonzero(sentences < SENTENCES_PER_IMAGE)]
        if limit is not None:
            keep = keep[:max(0, limit - count)]
        if not len(keep):
            continue
        count += len(keep)
        out["image_ids"] += [ids[i] for i in keep]
        out["boxes"].append(tf.gather(batch["boxes"], keep).numpy())
        out["images"].append(tf.gather(batch["image"], keep).numpy())
        words = batch["words"].to_list()
        captions = batch["captions"].to_list()
        for i in keep:
            out["word_ids"] += words[i][:SENTENCES_PER_IMAGE]
            out["texts"] += [c.decode() for c in captions[i][:SENTENCES_PER_IMAGE]]
        if limit is not None and count >= limit:
            break
    if not out["image_ids"]:
        raise ValueError(f"{data_dir} split {split!r}: no image with {SENTENCES_PER_IMAGE} sentences")
    for key in ("boxes", "images"):
        out[key] = np.concatenate(out[key])
    length = max(len(w) for w in out["word_ids"])
    padded = np.zeros((len(out["word_ids"]), length), np.int32)  # [5N, T]
    for row, ids in enumerate(out["word_ids"]):
        padded[row, :len(ids)] = ids
    out["word_ids"] = padded
    out["texts"] = [t.decode("utf-8") for t in text.normalize(tf.constant(out["texts"])).numpy()]
    return out


def embed_loaded(model, loaded: dict, batch_size: int = 100) -> dict:
    """`loaded` (a `load_split` result) with the model's "regions" [N, R, h] and "words" [5N, T, h]."""
    embed_regions = tf.function(model.embed_regions, reduce_retracing=True)
    embed_words = tf.function(model.embed_words, reduce_retracing=True)
    images, boxes, padded = loaded["images"], loaded["boxes"], loaded["word_ids"]
    regions = np.concatenate([embed_regions(tf.constant(images[i:i + batch_size]),
                                            tf.constant(boxes[i:i + batch_size])).numpy()
                              for i in range(0, len(images), batch_size)])
    words = np.concatenate([embed_words(tf.constant(padded[i:i + SENTENCE_CHUNK])).numpy()
                            for i in range(0, len(padded), SENTENCE_CHUNK)])
    return {**loaded, "regions": regions, "words": words}


def embed_split(model, data_dir: str, split: str, max_regions: int, batch_size: int = 100,
                limit: int | None = None) -> dict:
    """Region and word embeddings of every image of a split with >= 5 sentences (first 5 kept).

    Args:
        model: a `RegionRanker` (or a model with its `embed_regions` / `embed_words` interface).
        data_dir, split, max_regions, batch_size, limit: as in `load_split`.

    Returns:
        `load_split`'s dict with "regions": float32 [N, R, h] and "words": float32 [5N, T, h].
    """
    loaded = load_split(data_dir, split, model.image_size, max_regions, batch_size, limit)
    return embed_loaded(model, loaded, batch_size)


def score_matrix(model, embedded: dict, chunk: int = SENTENCE_CHUNK) -> np.ndarray:
    """S [N, 5N] of Eq. 8 (rows images, columns sentences, sentence j of image j // 5) for an
    `embed_split` result, `chunk` sentences at a time."""
    regions = tf.constant(embedded["regions"])
    columns = []
    for start in range(0, len(embedded["word_ids"]), chunk):
        columns.append(model.score(regions, tf.constant(embedded["words"][start:start + chunk]),
                                   tf.constant(embedded["word_ids"][start:start + chunk])).numpy())
    return np.concatenate(columns, axis=1)
