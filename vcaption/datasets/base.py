"""Canonical examples that every dataset reader yields, and the dead-letter record.

Readers turn a public format into these plain, picklable dataclasses (so that Beam can ship them
between workers). A reader never drops an input silently: what it cannot turn into an example it
yields as a `DeadLetter` naming the input and the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import zlib
from typing import Iterable, Iterator, Union

import tensorflow as tf

# "test_novel": a second test split of compositions held out of training (the shapes world's
# novel-composition benchmark); every reader passes it through under that name.
SPLITS = ("train", "val", "test", "test_novel")
# Splits that only some datasets have: stats.json and the shard files name them only when they hold
# examples, so that real datasets keep exactly their train/val/test.
OPTIONAL_SPLITS = ("test_novel",)


def present_splits(counts: dict) -> list[str]:
    """The splits to report from per-split counts ("examples/<split>" -> n)."""
    return [s for s in SPLITS if s not in OPTIONAL_SPLITS or counts.get(f"examples/{s}", 0)]


# Dead-letter reasons: short, stable codes that stats.json counts and users can grep for.
MALFORMED_JSON = "malformed_json"          # a JSON line / file that does not parse
MALFORMED_ENTRY = "malformed_entry"        # parses, but required fields are missing or mistyped
MALFORMED_LINE = "malformed_line"          # a text-format line that does not follow the format
DUPLICATE_ID = "duplicate_id"              # the same id seen again; the first one is kept
INVALID_UTF8 = "invalid_utf8"              # text bytes that are not UTF-8
UNKNOWN_SPLIT = "unknown_split"            # split name outside train/val/test/restval
CAPTION_EMPTY = "caption_empty"            # nothing left after normalization (empty, punctuation only)
NO_VALID_CAPTIONS = "no_valid_captions"    # every caption of an image was dead-lettered
IMAGE_MISSING = "image_missing"            # the referenced file does not exist or cannot be read
                                           # (no such file, a name too long for the file system, ...)
NOT_A_FILE = "not_a_file"                  # the path names a directory (or another non-file), not media
PATH_OUTSIDE_IMAGES = "path_outside_images"  # an absolute name, or one climbing out with "..": never read
PATH_INVALID = "path_invalid"              # a name holding a NUL byte, which no file system allows
IMAGE_UNDECODABLE = "image_undecodable"    # not an image, corrupt or truncated data
IMAGE_TOO_LARGE = "image_too_large"        # header claims more pixels than the limit
UNKNOWN_IMAGE = "unknown_image"            # an annotation refers to an image id that is not listed
VIDEO_UNREADABLE = "video_unreadable"      # missing, zero-length or undecodable video file
REGION_INVALID = "region_invalid"          # a box with non-positive size or outside the image


@dataclasses.dataclass(frozen=True)
class Region:
    """A box with its description, in source-image pixels (COCO / Visual Genome convention).

    Args:
        box: (x, y, width, height) of the top-left corner and size, in pixels of the source image.
        phrase: the words that describe the region ("large red circle"); may be empty.
        category: an object category name ("circle", "person"); may be empty.
        id: the region's id as its reader numbers it (the published id where there is one), which
            a dead letter of this region carries.
    """

    box: tuple[float, float, float, float]
    phrase: str = ""
    category: str = ""
    id: str = ""


@dataclasses.dataclass(frozen=True)
class CaptionedImage:
    """An image with its reference captions (and optional regions).

    Args:
        id: the dataset's image id as a string (COCO id, Karpathy imgid/filename, VG image_id).
        split: one of "train", "val", "test".
        image_path: where the encoded image file is (local path or gs:// URL).
        captions: the raw reference captions, as published.
        regions: boxes with phrases/categories, when the format has them.
        source: the annotation file this example came from, for dead-letter messages.
        caption_ids: the id of each caption as its reader numbers it (see `caption_ids`).
    """

    id: str
    split: str
    image_path: str
    captions: tuple[str, ...]
    regions: tuple[Region, ...] = ()
    source: str = ""
    caption_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class VQAExample:
    """One question about one image with its human answers (VQA v1/v2 layout).

    Args:
        question_id: the VQA question id as a string.
        image_id: the image the question is about.
        split: one of "train", "val", "test".
        image_path: where the encoded image file is.
        question: the question text.
        answers: the 10 human answers (empty for test questions without annotations).
        multiple_choice_answer: the most common human answer ("" when unknown).
        answer_type: "yes/no", "number" or "other" ("" when unknown).
        question_type: the question prefix used for per-type accuracy ("what color is the").
        source: the question file this example came from.
    """

    question_id: str
    image_id: str
    split: str
    image_path: str
    question: str
    answers: tuple[str, ...] = ()
    multiple_choice_answer: str = ""
    answer_type: str = ""
    question_type: str = ""
    source: str = ""


@dataclasses.dataclass(frozen=True)
class VideoExample:
    """A video file with its descriptions and (optionally) an activity label.

    Args:
        id: the video id ("video123", an MSVD YouTube clip id).
        split: one of "train", "val", "test".
        video_path: where the video file is.
        captions: the raw descriptions.
        label: the activity / category name, "" when the dataset has none.
        source: the annotation file this example came from.
        caption_ids: the id of each caption as its reader numbers it (see `caption_ids`).
    """

    id: str
    split: str
    video_path: str
    captions: tuple[str, ...] = ()
    label: str = ""
    source: str = ""
    caption_ids: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """An input that could not become an example, with the reason.

    `(unit, id)` names one input: a caption or region keeps the id its reader gave it through every
    stage (`caption_ids`), so the reader and the text step never number the same input twice. The
    one repeat is by definition: a DUPLICATE_ID letter carries the id of an input kept earlier.

    Args:
        id: the input's id (image id, question id, "file:line" for line formats).
        unit: what the input is: "image", "caption", "question", "video", "region", "line", "file".
        reason: one of the reason codes of this module.
        detail: a human-readable message naming the input and what is wrong with it.
        source: the file the input came from.
    """

    id: str
    unit: str
    reason: str
    detail: str
    source: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, sort_keys=True)


Example = Union[CaptionedImage, VQAExample, VideoExample]
ReaderOutput = Iterator[Union[Example, DeadLetter]]


def caption_ids(example: CaptionedImage | VideoExample) -> tuple[str, ...]:
    """The ids of an example's captions: its reader's (the published caption id, or
    `<example id>#<k>` with k the caption's position in the published list), else `<id>#<k>`."""
    return example.caption_ids or tuple(f"{example.id}#{k}" for k in range(len(example.captions)))


def path_problem(relative: str) -> tuple[str, str] | None:
    """(reason, problem) when a file name from an annotation must not be read, else None.

    Annotation files are input like any other: a name must stay under the media directory the user
    gave (`--images`), so an absolute name or one that climbs out with ".." is refused rather than
    read from elsewhere on the machine (or the bucket). A NUL byte would silently cut the name short
    in the file system's C API (TensorFlow reads "a.jpg\\0x" as "a.jpg"), so it is refused too.
    """
    if "\0" in relative:
        return PATH_INVALID, f"file name {relative!r} holds a NUL byte, which no file system allows"
    normal = posixpath.normpath(relative) if relative else ""
    if "://" in relative or posixpath.isabs(relative) or normal == ".." or normal.startswith("../"):
        return PATH_OUTSIDE_IMAGES, (f"file name {relative!r} points outside the media directory "
                                     "(absolute, or climbing out with '..'); it is not read")
    return None


def canonical_split(name: str) -> str | None:
    """Maps published split names to train/val/test(/test_novel); Karpathy's "restval" is training data."""
    name = (name or "").lower()
    if name in ("train", "restval"):
        return "train"
    if name in ("val", "valid", "validation", "validate", "dev"):
        return "val"
    if name in ("test", "test_novel"):
        return name
    return None


def load_json(path: str):
    """Loads a JSON file; bytes that are not UTF-8 survive as lone surrogates.

    The surrogates let a reader dead-letter just the string that holds them (INVALID_UTF8, see
    `vcaption.text.has_invalid_utf8`) instead of refusing the whole file.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        # Still a JSONDecodeError (a ValueError), but the message names the file: a whole file that
        # does not parse is a usage error the user has to fix, not a record to dead-letter.
        raise json.JSONDecodeError(f"{path} is not valid JSON: {error.msg}", error.doc, error.pos) from None


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) with undecodable bytes kept as surrogates."""
    with tf.io.gfile.GFile(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")


def join_path(directory: str, name: str) -> str:
    """os.path.join that also works for gs:// style URLs."""
    if "://" in directory:
        return directory.rstrip("/") + "/" + name.lstrip("/")
    return os.path.join(directory, name)


def first_existing(candidates: Iterable[str]) -> str:
    """The first candidate path that exists, else the first candidate (the error names it later)."""
    candidates = list(candidates)
    for path in candidates:
        if tf.io.gfile.exists(path):
            return path
    return candidates[0]


def split_from_subtype(subtype: str) -> str | None:
    """Split of a COCO/VQA data subtype: "train2014" -> train, "val2017" -> val, "test-dev2015" -> test."""
    subtype = (subtype or "").lower()
    for split in sorted(SPLITS, key=len, reverse=True):  # "test_novel" before "test"
        if split in subtype:
            return split
    return None


def hash_split(example_id: str, val_percent: int = 10, test_percent: int = 10) -> str:
    """A stable train/val/test assignment from the id alone (crc32), for formats without splits."""
    bucket = zlib.crc32(example_id.encode("utf-8", errors="surrogateescape")) % 100
    if bucket < 100 - val_percent - test_percent:
        return "train"
    return "val" if bucket < 100 - test_percent else "test"


def parent_dir(path: str) -> str:
    """The directory above `path` (a file or a directory), for local paths and gs:// URLs alike."""
    if "://" in path:
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))
