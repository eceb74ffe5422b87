"""Per-example ingest logic behind `beam_jobs.preprocess`: canonical example -> TFRecord.

Two stages, each a plain function or class so that the Beam job only wires them together
(DESIGN rule 6) and tests can call them without a pipeline:

1. `prepare_text`: tokenizes every caption / region phrase / question with `vcaption.text` and
   dead-letters the ones that normalize to nothing. Its output feeds the vocabulary count.
2. `RecordEncoder`: loads and resizes the image (or video frames) with `vcaption.images`, looks up
   token ids with the vocabulary, and serializes a record with `vcaption.records`. Any failure
   becomes a `DeadLetter` with the reason; nothing raises out of it for a bad record.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from vcaption import images, records, text
from vcaption.datasets import base
from vcaption.datasets.base import CaptionedImage, DeadLetter, Region, VideoExample, VQAExample
from vcaption.metrics import vqa as vqa_metrics
from vcaption.metrics.vqa import normalize_answer# the answer vocabulary's normal form


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """How records are written.

    Args:
        image_size: side of the square JPEG stored for each image / video frame.
        max_length: captions are truncated to this many words (LRCN/Karpathy use T <= 16).
        max_pixels: images whose header claims more pixels are dead-lettered (decompression bombs).
        jpeg_quality: quality of the stored JPEGs.
        max_frames: at most this many frames are kept per video (after the stride).
        frame_stride: keep every `frame_stride`-th frame.
        optical_flow: also store one flow image per frame (`images.optical_flow_images`, LRCN §4),
            computed on the resized frames.
        flow_scale: grey levels per pixel of displacement in the flow images.
    """

    image_size: int = 256
    max_length: int = 16
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    jpeg_quality: int = images.DEFAULT_JPEG_QUALITY
    max_frames: int = 32
    frame_stride: int = 1
    optical_flow: bool = False
    flow_scale: float = images.DEFAULT_FLOW_SCALE


@dataclasses.dataclass(frozen=True)
class Prepared:
    """An example whose texts passed normalization, with their tokens.

    `captions`/`regions` keep only the valid entries, aligned with `caption_tokens`/`region_tokens`.
    """

    example: base.Example
    captions: tuple[str, ...] = ()
    caption_tokens: tuple[tuple[str, ...], ...] = ()
    regions: tuple[Region, ...] = ()
    region_tokens: tuple[tuple[str, ...], ...] = ()
    question_tokens: tuple[str, ...] = ()

    @property
    def split(self) -> str:
        return self.example.split

    @property
    def id(self) -> str:
        return getattr(self.example, "question_id", None) or self.example.id


def _tokens(texts: Sequence[str]) -> list[tuple[str, ...]]:
    if not texts:
        return []
    return [tuple(row) for row in text.count_tokens(texts)]


def _keep_nonempty(example_id: str, unit: str, items: Sequence, texts: Sequence[str], ids: Sequence[str],
                   source: str):
    """(kept items, their tokens, dead letters) for texts that normalize to at least one word.

    A dead letter carries the id the reader gave the text (`ids`), the one numbering of the job.
    """
    kept, kept_tokens, dead = [], [], []
    for item, tokens, id, original in zip(items, _tokens(texts), ids, texts):
        if tokens:
            kept.append(item)
            kept_tokens.append(tokens)
        else:
            dead.append(DeadLetter(
                id=id, unit=unit, reason=base.CAPTION_EMPTY, source=source,
                detail=f"{unit} {id!r} of {example_id!r} has no words after normalization: {original!r}"))
    return tuple(kept), tuple(kept_tokens), dead


def prepare_text(example: base.Example) -> Iterator[Prepared | DeadLetter]:
    """Tokenizes the texts of one example; yields dead letters for empty ones, then the example
    (or its own dead letter if nothing describes it any more)."""
    source = example.source
    if isinstance(example, VQAExample):
        tokens = _tokens([example.question])[0]
        if not tokens:
            yield DeadLetter(example.question_id, "question", base.CAPTION_EMPTY, source=source,
                             detail=f"question {example.question_id!r} has no words after "
                                    f"normalization: {example.question!r}")
            return
        yield Prepared(example, question_tokens=tokens)
        return
    captions, caption_tokens, dead = _keep_nonempty(
        example.id, "caption", example.captions, example.captions, base.caption_ids(example), source)
    regions, region_tokens = (), ()
    if isinstance(example, CaptionedImage) and example.regions:
        region_ids = [r.id or f"{example.id}:{k}" for k, r in enumerate(example.regions)]
        regions, region_tokens, region_dead = _keep_nonempty(
            example.id, "region", example.regions, [r.phrase or r.category for r in example.regions],
            region_ids, source)
        dead += region_dead
    yield from dead
    if not captions and not regions:
        unit = "video" if isinstance(example, VideoExample) else "image"
        yield DeadLetter(example.id, unit, base.NO_VALID_CAPTIONS, source=source,
                         detail=f"{unit} {example.id!r}: none of its captions has words left")
        return
    yield Prepared(example, captions, caption_tokens, regions, region_tokens)


def vocabulary_words(prepared: Prepared) -> Iterator[str]:
    """The words of one example that count towards the (train-split) vocabulary."""
    for tokens in prepared.caption_tokens + prepared.region_tokens:
        yield from tokens
    yield from prepared.question_tokens


def vqa_soft_scores(answers: Sequence[str]) -> dict[str, float]:
    """VQA accuracy of each distinct (officially normalised) human answer: the soft targets.

    acc(a) = mean over the 10 leave-one-out subsets of min(#humans in the subset who said a / 3, 1)
    (Antol et al. §2); the one definition lives in `vcaption.metrics.vqa`.
    """
    return vqa_metrics.soft_scores(answers)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A serialized record, its split, and the counts it contributes to stats.json."""

    split: str
    serialized: bytes
    counts: tuple[tuple[str, int], ...]


def _normalized_box(box, source_size) -> list[float]:
    """(x, y, w, h) in source pixels -> (ymin, xmin, ymax, xmax) in [0, 1]."""
    height, width = source_size
    x, y, w, h = box
    return [float(np.clip(v, 0.0, 1.0)) for v in (y / height, x / width, (y + h) / height, (x + w) / width)]


_BOILERPLATE = re.compile(r"^(Graph execution error|Detected at node|Stack trace|<stack traces unavailable>"
                          r"|\s*File \")")
# What `tf.debugging.assert_non_negative` & co. add after the message: the condition and a tensor dump.
_ASSERT_DUMP = re.compile(r"\s*\[Condition [^\]]*did not hold[^\]]*\].*$", re.MULTILINE)


def error_message(error: Exception) -> str:
    """A one-line summary of an error, without TF's graph-execution boilerplate."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[\[\{\{node [^}]*\}\}\]\]|\s*\[Op:[^\]]*\]", "", message)
    message = _ASSERT_DUMP.sub("", message)
    lines = [line.strip() for line in message.splitlines() if line.strip() and not _BOILERPLATE.match(line)]
    return " | ".join(lines[:4])[:400] if lines else type(error).__name__


def read_media(path: str) -> bytes:
    """The bytes of an image (or other media) file, local or remote; raises what `tf.io.gfile` does
    (NotFoundError, FailedPreconditionError for a directory, ...) or ValueError for a NUL byte."""
    if "\0" in path:
        # TensorFlow's C++ file systems would read the name only up to the NUL: another file.
        raise ValueError(f"{path!r}: a file name holding a NUL byte is refused")
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def read_problem(path: str) -> tuple[str, str]:
    """(reason, what went wrong) for a media file `read_media` could not read: PATH_INVALID for a NUL
    byte, NOT_A_FILE for a directory, else IMAGE_MISSING (no such file, a name too long, no
    permission, ...)."""
    if "\0" in path:
        return base.PATH_INVALID, "has an invalid name"
    if _is_directory(path):
        return base.NOT_A_FILE, "is a directory, not a file"
    return base.IMAGE_MISSING, "cannot be read"


def read_failure(example_id: str, unit: str, path: str, error: Exception, source: str) -> DeadLetter:
    """The dead letter of a media file that could not be read, with `read_problem`'s reason."""
    reason, what = read_problem(path)
    return DeadLetter(example_id, unit, reason, source=source,
                      detail=f"{unit} {path!r} of {example_id!r} {what}: {error_message(error)}")


def _is_directory(path: str) -> bool:
    try:
        return tf.io.gfile.isdir(path)
    except (tf.errors.OpError, OSError):  # e.g. a name too long to stat: not a directory we can see
        return False


def image_failure(example_id: str, path: str, error: Exception, source: str) -> DeadLetter:
    """The dead letter of image bytes that could not be decoded, with the reason classified (too
    large, undecodable); the Beam jobs share this classification. Read failures are `read_failure`'s."""
    if "too large" in str(error):
        reason, what = base.IMAGE_TOO_LARGE, "is too large"
    else:
        reason, what = base.IMAGE_UNDECODABLE, "cannot be decoded"
    return DeadLetter(example_id, "image", reason, source=source,
                      detail=f"image {path!r} of {example_id!r} {what}: {error_message(error)}")


class RecordEncoder:
    """Turns `Prepared` examples into serialized records (or dead letters).

    Holds traced TensorFlow functions, so build one per worker (Beam `DoFn.setup`) and reuse it.

    Args:
        config: an `IngestConfig`.
        vocabulary: the word tokens in id order (reserved tokens first).
        answers: the answer vocabulary in id order (VQA only).
        labels: the activity labels in id order (video only).
    """

    def __init__(self, config: IngestConfig, vocabulary: Sequence[str],
                 answers: Sequence[str] = (), labels: Sequence[str] = ()):
        self.config = config
        self.vocab = text.Vocabulary(tokens=vocabulary)
        self.answer_ids = {a: i for i, a in enumerate(answers)}
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self._preprocess = images.make_image_preprocessor(config.image_size, config.max_pixels)
        # Traced: run eagerly, the lookup and concatenations took ~60% of the job's time.
        self._encode_texts = tf.function(lambda texts: self.vocab.encode(texts, config.max_length),
                                         input_signature=[tf.TensorSpec([None], tf.string)])

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
        def frame_to_jpeg(frame):
            return images.encode_jpeg(images.resize_image(frame, config.image_size), config.jpeg_quality)

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
        def resize_frame(frame):
            return images.resize_image(frame, config.image_size)

        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
        def to_jpeg(image):
            return images.encode_jpeg(image, config.jpeg_quality)

        self._frame_to_jpeg = frame_to_jpeg
        self._resize_frame, self._to_jpeg = resize_frame, to_jpeg

    def _caption_ids(self, captions: Sequence[str]) -> list[list[int]]:
        if not captions:
            return []
        return self._encode_texts(tf.constant(list(captions))).to_list()

    def _resize_to_jpeg(self, data: bytes) -> tuple[bytes, tuple[int, int]]:
        jpeg, size = self._preprocess(tf.constant(data))
        return jpeg.numpy(), tuple(int(v) for v in size.numpy())

    def _length_counts(self, split: str, tokens: Sequence[Sequence[str]]) -> list[tuple[str, int]]:
        counts = [(f"captions/{split}", len(tokens))]
        for row in tokens:
            if split == "train":
                counts.append((f"caption_length/{len(row)}", 1))
            if len(row) > self.config.max_length:
                counts.append(("truncated_captions", 1))
        return counts

    def encode(self, prepared: Prepared) -> Encoded | DeadLetter:
        example = prepared.example
        if isinstance(example, VideoExample):
            return self._encode_video(prepared)
        # Reading and decoding fail for different reasons (a missing file or a directory is not a
        # corrupt image), so they are told apart by where the error came from, not by its text.
        try:
            data = read_media(example.image_path)
        except (tf.errors.OpError, OSError, ValueError) as error:
            return read_failure(prepared.id, "image", example.image_path, error, example.source)
        try:
            jpeg, source_size = self._resize_to_jpeg(data)
        except (tf.errors.OpError, ValueError) as error:
            return image_failure(prepared.id, example.image_path, error, example.source)
        if isinstance(example, VQAExample):
            return self._encode_vqa(prepared, jpeg)
        serialized = records.encode_caption_example(
            image_id=example.id,
            captions=prepared.captions,
            caption_ids=self._caption_ids(prepared.captions),
            image_jpeg=jpeg,
            source_size=source_size,
            region_boxes=[_normalized_box(r.box, source_size) for r in prepared.regions],
            region_phrases=[r.phrase for r in prepared.regions],
            region_categories=[r.category for r in prepared.regions],
            region_phrase_ids=self._caption_ids([r.phrase or r.category for r in prepared.regions]),
        )
        counts = [(f"examples/{example.split}", 1), (f"regions/{example.split}", len(prepared.regions))]
        counts += self._length_counts(example.split, prepared.caption_tokens)
        return Encoded(example.split, serialized, tuple(counts))

    def _encode_vqa(self, prepared: Prepared, jpeg: bytes) -> Encoded:
        example = prepared.example
        scores = vqa_soft_scores(example.answers)
        in_vocab = {a: s for a, s in scores.items() if a in self.answer_ids}
        serialized = records.encode_vqa_example(
            question_id=example.question_id,
            image_id=example.image_id,
            question=example.question,
            question_ids=self.vocab.lookup(tf.constant(list(prepared.question_tokens))).numpy(),
            answers=example.answers,
            answer_ids=[self.answer_ids[a] for a in in_vocab],
            answer_scores=list(in_vocab.values()),
            image_jpeg=jpeg,
            answer_type=example.answer_type,
            question_type=example.question_type,
            multiple_choice_answer=example.multiple_choice_answer,
        )
        counts = [(f"examples/{example.split}", 1)]
        if not example.answers:
            # A test question (no annotations): kept so that it can be answered, counted here.
            counts.append((f"questions_without_answers/{example.split}", 1))
        elif not in_vocab:
            # Kept for evaluation (its answers are in the record) but it has no training target.
            counts.append((f"questions_without_top_answer/{example.split}", 1))
        # Rare answers outside the top K are no target, but never silently: counted per split.
        outside = sum(normalize_answer(a) not in self.answer_ids for a in example.answers)
        if outside:
            counts.append((f"answers_outside_top_k/{example.split}", outside))
        return Encoded(example.split, serialized, tuple(counts))

    def _encode_video(self, prepared: Prepared) -> Encoded | DeadLetter:
        example = prepared.example
        try:
            frames = images.read_video_frames(example.video_path, self.config.max_frames,
                                              self.config.frame_stride)
            jpegs = [self._frame_to_jpeg(tf.constant(frame)).numpy() for frame in frames]
            flow_jpegs = self._flow_jpegs(frames) if self.config.optical_flow else []
        except (tf.errors.OpError, OSError, ValueError) as error:
            if _is_directory(example.video_path):
                return read_failure(example.id, "video", example.video_path, error, example.source)
            return DeadLetter(example.id, "video", base.VIDEO_UNREADABLE, source=example.source,
                              detail=f"video {example.video_path!r} of {example.id!r}: "
                                     f"{error_message(error)}")
        serialized = records.encode_video_example(
            video_id=example.id, frames_jpeg=jpegs, captions=prepared.captions,
            caption_ids=self._caption_ids(prepared.captions), label=example.label,
            label_id=self.label_ids.get(example.label, -1), flow_jpeg=flow_jpegs)
        counts = [(f"examples/{example.split}", 1), (f"frames/{example.split}", len(jpegs))]
        counts += self._length_counts(example.split, prepared.caption_tokens)
        return Encoded(example.split, serialized, tuple(counts))

    def _flow_jpegs(self, frames) -> list[bytes]:
        """Flow images of the frames at the stored size (a 1-frame video has no motion: zero flow)."""
        resized = [self._resize_frame(tf.constant(frame)).numpy() for frame in frames]
        if len(resized) == 1:
            resized = resized * 2
        flow = images.optical_flow_images(resized, self.config.flow_scale)[:len(frames)]
        return [self._to_jpeg(tf.constant(image)).numpy() for image in flow]
