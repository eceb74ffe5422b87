"""The TFRecord schema: `encode_*` (Beam side, plain Python) next to `parse_*` (tf.data side).

Keeping both halves in one module is what keeps them in agreement (DESIGN rule 2): a feature
renamed or retyped here changes both the writer and the reader.

Three record kinds, one `tf.train.Example` each:

- caption record, one per image: the image (JPEG at the configured size, or precomputed features),
  every reference caption (raw text and token ids), and region boxes with their phrases;
- VQA record, one per question: image, question (raw and ids), the human answers, and the
  answer-vocabulary ids with their VQA soft scores;
- video record, one per video: frames as JPEGs, activity label and captions.

Variable-length lists of lists (captions of an image, phrases of its regions) are stored as flat
values plus row lengths and parsed into `tf.RaggedTensor`s.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

# Shared by all kinds.
IMAGE_ID = "image/id"
IMAGE_ENCODED = "image/encoded"          # JPEG bytes at the configured size
IMAGE_SOURCE_SIZE = "image/source_size"  # int64 [height, width] of the source file
IMAGE_FEATURES = "image/features"        # float32, flattened, for precomputed-features training
IMAGE_FEATURES_SHAPE = "image/features_shape"
CAPTION_RAW = "caption/raw"
CAPTION_IDS = "caption/ids"              # flat int64 ids of all captions, <start> ... <end>
CAPTION_LENGTHS = "caption/lengths"      # ids per caption
# Caption records only.
REGION_BOXES = "region/boxes"            # flat float32 [regions * 4] (ymin, xmin, ymax, xmax) in [0, 1]
REGION_PHRASE = "region/phrase"
REGION_CATEGORY = "region/category"
REGION_PHRASE_IDS = "region/phrase_ids"  # flat int64 ids, <start> ... <end>
REGION_PHRASE_LENGTHS = "region/phrase_lengths"
# VQA records.
QUESTION_ID = "question/id"
QUESTION_RAW = "question/raw"
QUESTION_IDS = "question/ids"            # word ids, no <start>/<end>
QUESTION_TYPE = "question/type"
ANSWERS_RAW = "answers/raw"              # the human answers as given
ANSWER_TYPE = "answer/type"
ANSWER_MULTIPLE_CHOICE = "answer/multiple_choice"
ANSWER_IDS = "answer/ids"                # answer-vocabulary ids of the candidate answers in the top K
ANSWER_SCORES = "answer/scores"          # VQA soft score min(#humans / 3, 1) of each candidate
# Video records.
VIDEO_ID = "video/id"
VIDEO_FRAMES = "video/frames"            # one JPEG per sampled frame
VIDEO_LABEL = "video/label"
VIDEO_LABEL_ID = "video/label_id"
VIDEO_FLOW = "video/flow"                # optional: one JPEG flow image per frame (LRCN §4)


def _bytes(values: Sequence[bytes | str]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[v.encode("utf-8") if isinstance(v, str) else v for v in values]))


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _flat(rows: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    return [v for row in rows for v in row], [len(row) for row in rows]


def _caption_features(captions: Sequence[str], caption_ids: Sequence[Sequence[int]]) -> dict:
    ids, lengths = _flat(caption_ids)
    return {CAPTION_RAW: _bytes(captions), CAPTION_IDS: _ints(ids), CAPTION_LENGTHS: _ints(lengths)}


def _image_features(image_jpeg: bytes | None, features: np.ndarray | None) -> dict:
    out = {}
    if image_jpeg is not None:
        out[IMAGE_ENCODED] = _bytes([image_jpeg])
    if features is not None:
        features = np.asarray(features, np.float32)
        out[IMAGE_FEATURES] = _floats(features.reshape(-1))
        out[IMAGE_FEATURES_SHAPE] = _ints(features.shape)
    return out


def encode_caption_example(
    image_id: str,
    captions: Sequence[str],
    caption_ids: Sequence[Sequence[int]],
    image_jpeg: bytes | None = None,
    source_size: tuple[int, int] = (0, 0),
    features: np.ndarray | None = None,
    region_boxes: Sequence[Sequence[float]] = (),
    region_phrases: Sequence[str] = (),
    region_categories: Sequence[str] = (),
    region_phrase_ids: Sequence[Sequence[int]] = (),
) -> bytes:
    """A caption record. `region_boxes` are normalized (ymin, xmin, ymax, xmax)."""
    phrase_ids, phrase_lengths = _flat(region_phrase_ids)
    feature = {
        IMAGE_ID: _bytes([image_id]),
        IMAGE_SOURCE_SIZE: _ints(source_size),
        **_image_features(image_jpeg, features),
        **_caption_features(captions, caption_ids),
        REGION_BOXES: _floats([c for box in region_boxes for c in box]),
        REGION_PHRASE: _bytes(region_phrases),
        REGION_CATEGORY: _bytes(region_categories),
        REGION_PHRASE_IDS: _ints(phrase_ids),
        REGION_PHRASE_LENGTHS: _ints(phrase_lengths),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _ragged(value_key: str, lengths_key: str, dtype=tf.int64) -> tf.io.RaggedFeature:
    return tf.io.RaggedFeature(dtype, value_key=value_key,
                               partitions=[tf.io.RaggedFeature.RowLengths(lengths_key)])


def _list(dtype) -> tf.io.RaggedFeature:
    return tf.io.RaggedFeature(dtype)


_CAPTION_SPEC = {
    IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
    IMAGE_SOURCE_SIZE: tf.io.FixedLenFeature([2], tf.int64),
    IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
    CAPTION_RAW: _list(tf.string),
    CAPTION_IDS: _ragged(CAPTION_IDS, CAPTION_LENGTHS),
    REGION_BOXES: _list(tf.float32),
    REGION_PHRASE: _list(tf.string),
    REGION_CATEGORY: _list(tf.string),
    REGION_PHRASE_IDS: _ragged(REGION_PHRASE_IDS, REGION_PHRASE_LENGTHS),
}


def parse_caption_example(serialized: tf.Tensor, feature_dim: int | None = None) -> dict:
    """Scalar serialized caption record -> dict of tensors.

    Returns keys: "image_id" string[], "source_size" int64[2], "image_jpeg" string[] ("" when the
    record holds features), "captions" string[(captions)], "caption_ids" int64[(captions), (ids)],
    "region_boxes" float32[(regions), 4], "region_phrases", "region_categories" string[(regions)],
    "region_phrase_ids" int64[(regions), (ids)], and "features" float32[feature_dim] when
    `feature_dim` is given.
    """
    spec = dict(_CAPTION_SPEC)
    if feature_dim is not None:
        spec[IMAGE_FEATURES] = tf.io.FixedLenFeature([feature_dim], tf.float32)
    parsed = tf.io.parse_single_example(serialized, spec)
    out = {
        "image_id": parsed[IMAGE_ID],
        "source_size": parsed[IMAGE_SOURCE_SIZE],
        "image_jpeg": parsed[IMAGE_ENCODED],
        "captions": parsed[CAPTION_RAW],
        "caption_ids": parsed[CAPTION_IDS],
        "region_boxes": tf.reshape(parsed[REGION_BOXES], [-1, 4]),  # [regions, 4]
        "region_phrases": parsed[REGION_PHRASE],
        "region_categories": parsed[REGION_CATEGORY],
        "region_phrase_ids": parsed[REGION_PHRASE_IDS],
    }
    if feature_dim is not None:
        out["features"] = parsed[IMAGE_FEATURES]
    return out


def encode_vqa_example(
    question_id: str,
    image_id: str,
    question: str,
    question_ids: Sequence[int],
    answers: Sequence[str],
    answer_ids: Sequence[int],
    answer_scores: Sequence[float],
    image_jpeg: bytes | None = None,
    features: np.ndarray | None = None,
    answer_type: str = "",
    question_type: str = "",
    multiple_choice_answer: str = "",
) -> bytes:
    """A VQA record: one question about one image, with the human answers and their soft scores."""
    feature = {
        QUESTION_ID: _bytes([question_id]),
        IMAGE_ID: _bytes([image_id]),
        **_image_features(image_jpeg, features),
        QUESTION_RAW: _bytes([question]),
        QUESTION_IDS: _ints(question_ids),
        QUESTION_TYPE: _bytes([question_type]),
        ANSWERS_RAW: _bytes(answers),
        ANSWER_TYPE: _bytes([answer_type]),
        ANSWER_MULTIPLE_CHOICE: _bytes([multiple_choice_answer]),
        ANSWER_IDS: _ints(answer_ids),
        ANSWER_SCORES: _floats(answer_scores),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_VQA_SPEC = {
    QUESTION_ID: tf.io.FixedLenFeature([], tf.string),
    IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
    IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
    QUESTION_RAW: tf.io.FixedLenFeature([], tf.string),
    QUESTION_IDS: _list(tf.int64),
    QUESTION_TYPE: tf.io.FixedLenFeature([], tf.string),
    ANSWERS_RAW: _list(tf.string),
    ANSWER_TYPE: tf.io.FixedLenFeature([], tf.string),
    ANSWER_MULTIPLE_CHOICE: tf.io.FixedLenFeature([], tf.string),
    ANSWER_IDS: _list(tf.int64),
    ANSWER_SCORES: _list(tf.float32),
}


def parse_vqa_example(serialized: tf.Tensor, feature_dim: int | None = None) -> dict:
    """Scalar serialized VQA record -> dict: "question_id", "image_id", "image_jpeg", "question",
    "question_ids" int64[(words)], "question_type", "answers" string[(humans)], "answer_type",
    "multiple_choice_answer", "answer_ids" int64[(candidates)], "answer_scores" float32[(candidates)]
    (and "features" when `feature_dim` is given)."""
    spec = dict(_VQA_SPEC)
    if feature_dim is not None:
        spec[IMAGE_FEATURES] = tf.io.FixedLenFeature([feature_dim], tf.float32)
    parsed = tf.io.parse_single_example(serialized, spec)
    out = {
        "question_id": parsed[QUESTION_ID],
        "image_id": parsed[IMAGE_ID],
        "image_jpeg": parsed[IMAGE_ENCODED],
        "question": parsed[QUESTION_RAW],
        "question_ids": parsed[QUESTION_IDS],
        "question_type": parsed[QUESTION_TYPE],
        "answers": parsed[ANSWERS_RAW],
        "answer_type": parsed[ANSWER_TYPE],
        "multiple_choice_answer": parsed[ANSWER_MULTIPLE_CHOICE],
        "answer_ids": parsed[ANSWER_IDS],
        "answer_scores": parsed[ANSWER_SCORES],
    }
    if feature_dim is not None:
        out["features"] = parsed[IMAGE_FEATURES]
    return out


def encode_video_example(
    video_id: str,
    frames_jpeg: Sequence[bytes],
    captions: Sequence[str],
    caption_ids: Sequence[Sequence[int]],
    label: str = "",
    label_id: int = -1,
    flow_jpeg: Sequence[bytes] = (),
) -> bytes:
    """A video record: sampled frames as JPEGs, the activity label and the descriptions; with
    `flow_jpeg`, also one optical-flow image per frame (`images.optical_flow_images`)."""
    feature = {
        VIDEO_ID: _bytes([video_id]),
        VIDEO_FRAMES: _bytes(frames_jpeg),
        VIDEO_LABEL: _bytes([label]),
        VIDEO_LABEL_ID: _ints([label_id]),
        **_caption_features(captions, caption_ids),
    }
    if flow_jpeg:
        feature[VIDEO_FLOW] = _bytes(flow_jpeg)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


_VIDEO_SPEC = {
    VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
    VIDEO_FRAMES: _list(tf.string),
    VIDEO_LABEL: tf.io.FixedLenFeature([], tf.string),
    VIDEO_LABEL_ID: tf.io.FixedLenFeature([], tf.int64),
    VIDEO_FLOW: _list(tf.string),
    CAPTION_RAW: _list(tf.string),
    CAPTION_IDS: _ragged(CAPTION_IDS, CAPTION_LENGTHS),
}


def parse_video_example(serialized: tf.Tensor) -> dict:
    """Scalar serialized video record -> dict: "video_id", "frames_jpeg" string[(frames)], "label",
    "label_id", "captions" string[(captions)], "caption_ids" int64[(captions), (ids)], "flow_jpeg"
    string[(frames)] (empty when the record has no flow images)."""
    parsed = tf.io.parse_single_example(serialized, _VIDEO_SPEC)
    return {
        "video_id": parsed[VIDEO_ID],
        "frames_jpeg": parsed[VIDEO_FRAMES],
        "label": parsed[VIDEO_LABEL],
        "label_id": parsed[VIDEO_LABEL_ID],
        "captions": parsed[CAPTION_RAW],
        "caption_ids": parsed[CAPTION_IDS],
        "flow_jpeg": parsed[VIDEO_FLOW],
    }
