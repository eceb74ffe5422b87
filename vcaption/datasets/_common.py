"""Machinery the format readers share: field checks, duplicate ids, caption collection, image dirs.

Every reader applies the same record rules (see `vcaption.datasets.base`); writing them once here
keeps the readers about their format only.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import tensorflow as tf

from vcaption.datasets.base import (
    DUPLICATE_ID, INVALID_UTF8, MALFORMED_ENTRY, NO_VALID_CAPTIONS, DeadLetter, Example, ReaderOutput,
    first_existing, join_path, path_problem)
from vcaption.text import has_invalid_utf8

# A caption to check: (caption id for the dead letter, the text as parsed, where it was found).
CaptionInput = tuple[str, object, str]


def expand_inputs(input_path: str, what: str, directory_pattern: str | None = None) -> list[str]:
    """The files of an `--input`: one path, a comma-separated list, globs (`a/captions_*.json`),
    and with `directory_pattern` a directory (its files matching the pattern).

    Raises:
        ValueError naming the part that matches nothing.
    """
    paths = []
    for part in filter(None, (p.strip() for p in input_path.split(","))):
        if directory_pattern and tf.io.gfile.isdir(part):
            part = join_path(part, directory_pattern)
        matches = sorted(tf.io.gfile.glob(part)) if any(c in part for c in "*?[") else [part]
        if not matches:
            raise ValueError(f"{part!r} matches no {what}")
        paths.extend(matches)
    if not paths:
        raise ValueError(f"no {what} given")
    return paths


def printable(text: str) -> str:
    """`text` with bytes that are not UTF-8 shown as U+FFFD, safe to write into a dead letter."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def field_problem(entry: object, fields: dict[str, type | tuple[type, ...]]) -> str | None:
    """Describes the first required field that is missing or mistyped, or None if all are fine."""
    if not isinstance(entry, dict):
        return f"entry is a {type(entry).__name__}, not a JSON object"
    for name, types in fields.items():
        if name not in entry:
            return f"missing field {name!r}"
        value = entry[name]
        # bool is an int subclass, but `true` is never a valid id or coordinate.
        if not isinstance(value, types) or isinstance(value, bool):
            return f"field {name!r} is {type(value).__name__} {printable(repr(value))[:80]}"
    return None


def text_problem(text: object, what: str) -> tuple[str, str] | None:
    """(reason, problem) when `text` cannot be used as a caption/question/phrase, else None."""
    if not isinstance(text, str):
        return MALFORMED_ENTRY, f"{what} is {type(text).__name__}, not a string"
    if has_invalid_utf8(text):
        return INVALID_UTF8, f"{what} holds bytes that are not UTF-8: {printable(text)!r}"
    return None


def name_problem(name: object, unit: str, what: str, where: str, source: str) -> DeadLetter | None:
    """INVALID_UTF8 when an id or file name holds bytes that are not UTF-8, else None.

    Such a name would end up in example keys and file paths, where it cannot be encoded.
    """
    if isinstance(name, str) and has_invalid_utf8(name):
        return DeadLetter(printable(name), unit, INVALID_UTF8,
                          f"{printable(where)}: {what} is not UTF-8: {printable(name)!r}", source)
    return None


def media_problem(relatives: Sequence[str], id: str, unit: str, where: str, source: str) -> DeadLetter | None:
    """PATH_OUTSIDE_IMAGES / PATH_INVALID when a media file name an annotation gives (any of the
    candidate `relatives`) must not be read (`base.path_problem`), else None."""
    for relative in relatives:
        problem = path_problem(relative)
        if problem:
            return DeadLetter(printable(id), unit, problem[0], f"{printable(where)}: {problem[1]}", source)
    return None


class SeenIds:
    """Remembers ids so that a repeated one becomes a DUPLICATE_ID dead letter; the first is kept.

    Args:
        unit: the dead-letter unit of the ids ("image", "caption", "question", ...).
    """

    def __init__(self, unit: str):
        self.unit = unit
        self._seen: set[str] = set()

    def duplicate(self, id: str, where: str, source: str) -> DeadLetter | None:
        if id in self._seen:
            return DeadLetter(printable(id), self.unit, DUPLICATE_ID,
                              f"{where}: {self.unit} id {printable(id)!r} appeared before; the first is kept",
                              source)
        self._seen.add(id)
        return None


def with_captions(
    id: str,
    unit: str,
    captions: Iterable[CaptionInput],
    where: str,
    source: str,
    build: Callable[[tuple[str, ...], tuple[str, ...]], Example],
) -> ReaderOutput:
    """Dead-letters the captions that are not valid text, then yields `build(kept, kept_ids)`.

    An example without captions is useless for training and evaluation, so when nothing is kept the
    whole `unit` becomes a NO_VALID_CAPTIONS dead letter instead.

    Args:
        id: the image/video id, for the NO_VALID_CAPTIONS dead letter.
        unit: "image" or "video".
        captions: (caption id, text, where) triples in published order.
        where: names the image/video in messages ("path: image '42'").
        source: the annotation file.
        build: makes the example from the kept captions and their ids (the example's
            `caption_ids`, so that later stages dead-letter a caption under the same id).
    """
    kept, kept_ids, dead = [], [], 0
    for caption_id, text, caption_where in captions:
        problem = text_problem(text, "caption")
        if problem is None:
            kept.append(text)
            kept_ids.append(printable(caption_id))
            continue
        dead += 1
        reason, message = problem
        yield DeadLetter(printable(caption_id), "caption", reason, f"{caption_where}: {message}", source)
    if kept:
        yield build(tuple(kept), tuple(kept_ids))
    else:
        yield DeadLetter(printable(id), unit, NO_VALID_CAPTIONS,
                         f"{where}: no valid captions ({dead} dead-lettered, none left)", source)


class ImageDir:
    """Resolves media paths under the directory the user gave, or one found among defaults.

    Without `images_dir` the directory is the first default holding the first file looked up, else
    the first default that exists, else the first default. It is decided once, so a dataset of 100k
    images costs one probe rather than one per image (each probe is a GCS request on gs://).

    Args:
        images_dir: the directory given by the user, or None.
        defaults: candidate directories, most likely first.

    Example:
        >>> images = ImageDir(None, ["/data/coco", "/data/coco/images"])
        >>> images.path("val2017/000000000139.jpg", "000000000139.jpg")
        '/data/coco/val2017/000000000139.jpg'
    """

    def __init__(self, images_dir: str | None, defaults: Sequence[str]):
        self._dir = images_dir
        self._defaults = list(defaults)

    def path(self, *relatives: str) -> str:
        """The first of `relatives` that exists under the directory, else the first one.

        Readers dead-letter unsafe names first (`media_problem`); one that gets here anyway is a
        bug in the reader, which must fail rather than read outside the directory.
        """
        unsafe = [r for r in relatives if path_problem(r)]
        if unsafe:
            raise ValueError(f"refusing to look up {unsafe[0]!r}: {path_problem(unsafe[0])[1]}")
        if self._dir is None:
            self._dir = self._choose(relatives)
        if len(relatives) == 1:
            return join_path(self._dir, relatives[0])  # nothing to choose: skip the exists() call
        return first_existing(join_path(self._dir, r) for r in relatives)

    def _choose(self, relatives: Sequence[str]) -> str:
        for directory in self._defaults:
            if any(tf.io.gfile.exists(join_path(directory, r)) for r in relatives):
                return directory
        return next((d for d in self._defaults if tf.io.gfile.isdir(d)), self._defaults[0])

