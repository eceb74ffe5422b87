"""tf.data pipelines over the records written by `beam_jobs.preprocess`.

`make_dataset(data_dir, split, task, batch_size, ...)` reads the split's shards interleaved,
parses them (`vcaption.records`), decodes and resizes images in parallel with the same
`vcaption.images.preprocess_image` the export uses, shuffles, buckets captions by length, pads and
prefetches. One element structure per task:

- "caption" (training pairs; an image's JPEG is decoded once and shared by its captions):
  `({"visual": uint8[B, S, S, 3] | float32[B, F], "caption_in": int32[B, T]}, caption_out int32[B, T])`
  with caption_in = <start> w1 .. wn and caption_out = w1 .. wn <end>, zero-padded to the longest
  caption of the bucket.
  With `captions_per_image=K`, "visual" holds each image once ([B // K, ...]) and the captions
  follow image-major, K per image.
- "caption_eval" (one element per image, for generation and metrics):
  `{"image_id": string[B], "visual": ..., "references": string[B, (captions)] (ragged)}`.
- "vqa": `({"visual": ..., "question": int32[B, Q]}, answer_scores float32[B, K])` (soft targets).
- "video": `({"frames": uint8[B, F, S, S, 3]}, {"label": int32[B], "caption_in", "caption_out"})`;
  with `flow=True` the inputs also hold "flow": uint8[B, F, S, S, 3], the flow images (LRCN §4).
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Sequence

import tensorflow as tf

from vcaption import images, records, text

AUTOTUNE = tf.data.AUTOTUNE
TASKS = ("caption", "caption_eval", "vqa", "video")


def split_pattern(data_dir: str, split: str) -> str:
    """The shard pattern of one split in a preprocess output directory."""
    return os.path.join(data_dir, f"{split}-*.tfrecord*")


def read_records(pattern: str, shuffle: bool, seed: int | None = None) -> tf.data.Dataset:
    """Serialized records of every shard matching `pattern`, shards read interleaved."""
    files = tf.io.gfile.glob(pattern)
    if not files:
        raise FileNotFoundError(f"no TFRecord shards match {pattern!r}: run beam_jobs.preprocess first")
    shards = tf.data.Dataset.from_tensor_slices(sorted(files))
    if shuffle:
        shards = shards.shuffle(len(files), seed=seed)
    return shards.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                             num_parallel_calls=AUTOTUNE, deterministic=not shuffle)


# What the blind baselines see instead of an image: one constant zero feature (no CNN runs on it).
BLIND_FEATURE_DIM = 1


def _visual(parsed: dict, image_size: int, feature_dim: int | None, blind: bool = False) -> tf.Tensor:
    if blind:  # no JPEG is decoded: the image would be thrown away
        return tf.zeros([BLIND_FEATURE_DIM], tf.float32)
    if feature_dim is not None:
        return parsed["features"]
    return images.preprocess_image(parsed["image_jpeg"], image_size)


VisualFn = Callable[[dict], tf.Tensor]  # parsed record -> "visual" input of one example


def _caption_pairs(parsed: dict, visual_fn: VisualFn) -> tf.data.Dataset:
    visual = visual_fn(parsed)
    ids = tf.cast(parsed["caption_ids"], tf.int32)  # [captions, (ids)]
    count = ids.nrows()
    visuals = tf.repeat(visual[tf.newaxis], count, axis=0)  # [captions, ...], one decode per image
    return tf.data.Dataset.from_tensor_slices((visuals, ids))


def _shift(visual: tf.Tensor, ids: tf.Tensor):
    # ids: [batch, T + 1] = <start> w1 .. wn <end> 0 ..
    return {"visual": visual, "caption_in": ids[:, :-1]}, ids[:, 1:]


def _caption_dataset(serialized, batch_size, visual_fn, feature_dim, training, seed,
                     shuffle_buffer, bucket_boundaries, drop_remainder):
    parsed = serialized.map(lambda s: records.parse_caption_example(s, feature_dim),
                            num_parallel_calls=AUTOTUNE, deterministic=not training)
    pairs = parsed.interleave(lambda p: _caption_pairs(p, visual_fn),
                              cycle_length=16, num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training:
        pairs = pairs.shuffle(shuffle_buffer, seed=seed)
    # Captions of similar length share a batch so that little compute goes to padding.
    boundaries = list(bucket_boundaries)
    batched = pairs.map(lambda v, ids: (v, ids.to_tensor() if isinstance(ids, tf.RaggedTensor) else ids)) \
        .bucket_by_sequence_length(
            element_length_func=lambda v, ids: tf.shape(ids)[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            drop_remainder=drop_remainder)
    return batched.map(_shift, num_parallel_calls=AUTOTUNE)


def _grouped_caption_dataset(serialized, batch_size, visual_fn, feature_dim, training, seed,
                             shuffle_buffer, drop_remainder, captions_per_image):
    """Each image once with exactly K = captions_per_image of its captions (a random K in training,
    repeating captions of images that have fewer), batched as batch_size // K images: visual
    [images, ...] and captions [images * K, T], image-major, for `layers.RepeatPerCaption`."""
    k = captions_per_image
    parsed = serialized.map(lambda s: records.parse_caption_example(s, feature_dim),
                            num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training:
        parsed = parsed.shuffle(max(shuffle_buffer // k, 1), seed=seed)

    def to_group(p):
        ids = tf.cast(p["caption_ids"], tf.int32)  # [captions, (ids)]
        order = tf.range(ids.nrows(out_type=tf.int32))
        if training:
            order = tf.random.shuffle(order, seed=seed)
        chosen = tf.gather(ids, tf.gather(order, tf.range(k) % tf.size(order)))  # [K, (ids)]
        return visual_fn(p), chosen.to_tensor()  # ids: [K, L]

    groups = parsed.map(to_group, num_parallel_calls=AUTOTUNE, deterministic=not training)
    batched = groups.padded_batch(max(batch_size // k, 1), drop_remainder=drop_remainder)

    def flatten(visual, ids):  # ids [images, K, L] -> [images * K, L]
        return _shift(visual, tf.reshape(ids, [-1, tf.shape(ids)[2]]))

    return batched.map(flatten, num_parallel_calls=AUTOTUNE)


def _caption_eval_dataset(serialized, batch_size, visual_fn, feature_dim):
    def to_element(s):
        parsed = records.parse_caption_example(s, feature_dim)
        return {"image_id": parsed["image_id"], "visual": visual_fn(parsed),
                "references": parsed["captions"]}

    return serialized.map(to_element, num_parallel_calls=AUTOTUNE).ragged_batch(batch_size)


def _vqa_dataset(serialized, batch_size, visual_fn, feature_dim, answer_vocab_size, training, seed,
                 shuffle_buffer, drop_remainder):
    def to_element(s):
        parsed = records.parse_vqa_example(s, feature_dim)
        scores = tf.scatter_nd(parsed["answer_ids"][:, tf.newaxis], parsed["answer_scores"],
                               [answer_vocab_size])  # [K], zero for answers outside the top K
        inputs = {"visual": visual_fn(parsed),
                  "question": tf.cast(parsed["question_ids"], tf.int32)}
        return inputs, scores

    elements = serialized.map(to_element, num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training:
        elements = elements.shuffle(shuffle_buffer, seed=seed)
    return elements.padded_batch(batch_size, drop_remainder=drop_remainder)


def decode_clip(jpegs, image_size, num_frames):
    """string[(frames)] JPEGs -> uint8[num_frames, S, S, 3]."""
    frames = images.preprocess_images(jpegs[:num_frames], image_size)
    # Short videos repeat their last frame so that every clip has num_frames frames.
    missing = num_frames - tf.shape(frames)[0]
    return tf.concat([frames, tf.repeat(frames[-1:], missing, axis=0)], axis=0)  # [F, S, S, 3]


def _video_dataset(serialized, batch_size, image_size, num_frames, training, seed, shuffle_buffer,
                   drop_remainder, flow=False):
    def to_element(s):
        parsed = records.parse_video_example(s)
        inputs = {"frames": decode_clip(parsed["frames_jpeg"], image_size, num_frames)}
        if flow:
            has_flow = tf.debugging.assert_positive(
                tf.size(parsed["flow_jpeg"]), message="video record without flow images: "
                "preprocess with --optical-flow")
            with tf.control_dependencies([has_flow]):
                inputs["flow"] = decode_clip(parsed["flow_jpeg"], image_size, num_frames)
        ids = tf.cast(parsed["caption_ids"], tf.int32)
        # Training shows a different one of the video's descriptions each time; evaluation the first.
        count = ids.nrows(out_type=tf.int64)
        pick = tf.random.uniform([], 0, count, tf.int64, seed=seed) if training else tf.constant(0, tf.int64)
        caption = ids[pick]
        return inputs, {"label": tf.cast(parsed["label_id"], tf.int32),
                        "caption_in": caption[:-1], "caption_out": caption[1:]}

    elements = serialized.map(to_element, num_parallel_calls=AUTOTUNE, deterministic=not training)
    if training:
        elements = elements.shuffle(shuffle_buffer, seed=seed)
    return elements.padded_batch(batch_size, drop_remainder=drop_remainder)


def make_dataset(
    data_dir: str,
    split: str,
    task: str = "caption",
    batch_size: int = 32,
    image_size: int = 64,
    training: bool | None = None,
    feature_dim: int | None = None,
    seed: int | None = None,
    shuffle_buffer: int = 4096,
    bucket_boundaries: Sequence[int] = (6, 9, 12, 15),
    answer_vocab_size: int | None = None,
    num_frames: int = 16,
    repeat: bool = False,
    drop_remainder: bool = False,
    flow: bool = False,
    captions_per_image: int | None = None,
    blind: bool = False,
    word_dropout: float = 0.0,
) -> tf.data.Dataset:
    """The tf.data pipeline of one split for one task (element structures in the module docstring).

    Args:
        data_dir: a `beam_jobs.preprocess` output directory.
        split: "train", "val" or "test".
        task: one of `TASKS`.
        batch_size: examples per batch.
        image_size: images are resized to this square size (a no-op when records already are).
        training: shuffle and buckets nondeterministically; default: split == "train".
        feature_dim: read precomputed features of this size instead of images.
        seed: shuffling seed.
        shuffle_buffer: examples in the shuffle buffer.
        bucket_boundaries: caption lengths (in ids, with <start>/<end>) where buckets split.
        answer_vocab_size: K, the size of answers.txt (task "vqa").
        num_frames: frames per clip (task "video").
        repeat: repeat forever (for step-based training).
        drop_remainder: drop the last partial batch (static batch size).
        flow: task "video": also decode the records' optical-flow images as inputs["flow"].
        captions_per_image: task "caption": K > 1 groups each image with K of its captions, so
            that a batch of `batch_size` captions holds `batch_size // K` images (the captioners
            repeat the image features per caption); None or 1: one (image, caption) pair each.
        blind: tasks "caption", "caption_eval" and "vqa": decode no image; "visual" is one zero
            feature per example, float32[B, 1], what the blind baselines see.
        word_dropout: task "caption": each word of "caption_in" (not <start>, not padding)
            becomes <unk> with this probability; the targets stay whole.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    training = (split == "train") if training is None else training
    serialized = read_records(split_pattern(data_dir, split), shuffle=training, seed=seed)
    if repeat:
        serialized = serialized.repeat()
    visual_fn = functools.partial(_visual, image_size=image_size, feature_dim=feature_dim, blind=blind)
    if task == "caption" and captions_per_image and captions_per_image > 1:
        dataset = _grouped_caption_dataset(serialized, batch_size, visual_fn, feature_dim, training,
                                           seed, shuffle_buffer, drop_remainder, captions_per_image)
    elif task == "caption":
        dataset = _caption_dataset(serialized, batch_size, visual_fn, feature_dim, training, seed,
                                   shuffle_buffer, bucket_boundaries, drop_remainder)
    elif task == "caption_eval":
        dataset = _caption_eval_dataset(serialized, batch_size, visual_fn, feature_dim)
    elif task == "vqa":
        if answer_vocab_size is None:
            raise ValueError("task 'vqa' needs answer_vocab_size (the number of lines of answers.txt)")
        dataset = _vqa_dataset(serialized, batch_size, visual_fn, feature_dim, answer_vocab_size,
                               training, seed, shuffle_buffer, drop_remainder)
    else:
        dataset = _video_dataset(serialized, batch_size, image_size, num_frames, training, seed,
                                 shuffle_buffer, drop_remainder, flow)
    if word_dropout:
        if task != "caption":
            raise ValueError(f"word_dropout applies to task 'caption', not {task!r}")
        dataset = dataset.map(lambda inputs, targets: (
            {**inputs, "caption_in": drop_words(inputs["caption_in"], word_dropout, seed)}, targets),
            num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def drop_words(ids: tf.Tensor, rate: float, seed: int | None = None) -> tf.Tensor:
    """Replaces each word id (>= the first non-reserved id) by <unk> with probability `rate`."""
    words = ids > text.UNK_ID  # <pad>, <start>, <end> and <unk> stay
    dropped = tf.random.uniform(tf.shape(ids), seed=seed) < rate
    return tf.where(words & dropped, tf.constant(text.UNK_ID, ids.dtype), ids)
