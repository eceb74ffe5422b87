"""tf.data pipelines of the region ranker, over the caption records of `beam_jobs.preprocess`.

Region boxes come from the records (COCO instances, Visual Genome regions, the shapes world's
objects); region 0 is always the whole image, as in Karpathy & Fei-Fei §3.1.1 ("the top 19
detected locations in addition to the whole image"). Every image gets exactly `max_regions`
boxes: extra boxes are dropped (largest first are kept), missing ones repeat the whole-image box,
which changes no max over regions (Eq. 8) and no alignment (ties go to the first region).

- `training_dataset`: `{"image": uint8 [B, S, S, 3], "boxes": float32 [B, R, 4], "words": int32 [B, T]}`
  with one randomly chosen sentence per image, so that a minibatch never holds two sentences of
  one image (they would be counted as negatives of each other in Eq. 9).
- `eval_dataset`: one element per image with all its sentences, for retrieval and alignment.
"""

from __future__ import annotations

import tensorflow as tf

from vcaption import data, images, records
from vcaption.retrieval.ranker import WHOLE_IMAGE_BOX

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_MAX_REGIONS = 5


def region_boxes(parsed_boxes: tf.Tensor, max_regions: int) -> tf.Tensor:
    """[n, 4] record boxes -> [max_regions, 4]: the whole image, then the largest boxes, then
    whole-image padding."""
    areas = (parsed_boxes[:, 2] - parsed_boxes[:, 0]) * (parsed_boxes[:, 3] - parsed_boxes[:, 1])
    keep = tf.minimum(tf.shape(parsed_boxes)[0], max_regions - 1)
    # Keep the record's order among the kept boxes, so region k + 1 is record box k when all fit.
    largest = tf.sort(tf.math.top_k(areas, k=keep).indices)
    kept = tf.gather(parsed_boxes, largest)  # [keep, 4]
    whole = tf.constant([WHOLE_IMAGE_BOX], tf.float32)
    padding = tf.tile(whole, [max_regions - 1 - keep, 1])
    return tf.ensure_shape(tf.concat([whole, kept, padding], axis=0), [max_regions, 4])


def _words(caption_ids: tf.Tensor) -> tf.Tensor:
    """<start> w1 .. wn <end> -> w1 .. wn (int32)."""
    return tf.cast(caption_ids[1:-1], tf.int32)


def _parse(serialized, image_size: int, max_regions: int) -> dict:
    parsed = records.parse_caption_example(serialized)
    return {"image_id": parsed["image_id"],
            "image": images.preprocess_image(parsed["image_jpeg"], image_size),
            "boxes": region_boxes(parsed["region_boxes"], max_regions),
            "caption_ids": parsed["caption_ids"],
            "captions": parsed["captions"]}


def training_dataset(data_dir: str, split: str = "train", batch_size: int = 100, image_size: int = 64,
                     max_regions: int = DEFAULT_MAX_REGIONS, seed: int | None = None,
                     repeat: bool = True, shuffle_buffer: int = 2048) -> tf.data.Dataset:
    """Matching (image, sentence) pairs for Eq. 9, one random sentence per image.

    Args:
        data_dir: a `beam_jobs.preprocess` output directory (records with region boxes).
        split: the split to read.
        batch_size: images (= sentences) per minibatch.
        image_size: side S of the decoded images.
        max_regions: R, boxes per image including the whole image.
        seed: shuffling and sentence-choice seed.
        repeat: repeat forever (step-based training).
        shuffle_buffer: images in the shuffle buffer.
    """
    serialized = data.read_records(data.split_pattern(data_dir, split), shuffle=True, seed=seed)
    if repeat:
        serialized = serialized.repeat()

    def to_pair(s):
        parsed = _parse(s, image_size, max_regions)
        ids = parsed["caption_ids"]  # [captions, (ids)]
        pick = tf.random.uniform([], 0, ids.nrows(out_type=tf.int64), dtype=tf.int64, seed=seed)
        return {"image": parsed["image"], "boxes": parsed["boxes"], "words": _words(ids[pick])}

    pairs = serialized.shuffle(shuffle_buffer, seed=seed).map(to_pair, num_parallel_calls=AUTOTUNE,
                                                              deterministic=False)
    return pairs.padded_batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(data_dir: str, split: str, batch_size: int = 100, image_size: int = 64,
                 max_regions: int = DEFAULT_MAX_REGIONS) -> tf.data.Dataset:
    """One element per image, in record order: `{"image_id", "image", "boxes",
    "words": int32 [B, (sentences), (T)] ragged, "captions": string [B, (sentences)]}`."""
    serialized = data.read_records(data.split_pattern(data_dir, split), shuffle=False)

    def to_element(s):
        parsed = _parse(s, image_size, max_regions)
        ids = tf.cast(parsed.pop("caption_ids"), tf.int32)
        parsed["words"] = ids[:, 1:-1]  # strip <start> / <end> of every sentence
        return parsed

    return serialized.map(to_element, num_parallel_calls=AUTOTUNE).ragged_batch(batch_size) \
        .prefetch(AUTOTUNE)
