"""Shared pieces of the RunInference jobs (`batch_caption`, `extract_features`).

Both jobs read encoded images — image files matched by patterns (local or `gs://`, through
`apache_beam.io.fileio`), or the project's caption records (TFRecords written by
`beam_jobs.preprocess`) — check that every image decodes, and run a batched TensorFlow function
over the encoded bytes with keyed `RunInference`. Nothing is lost: an input that cannot be read,
parsed, decoded or run through the model becomes a `DeadLetter` with the reason.

Elements between the stages are `(ImageKey, bytes)` pairs: the key carries everything the writer
needs later (id, source, split and, for record inputs, the record itself), so RunInference's
keyed handler hands it back with the prediction and no join is needed.

Why both a validation stage and a per-element fallback: one bad image makes a whole batched
signature call fail with InvalidArgumentError, and the batch would be lost. `ValidateImages`
decodes each image with `vcaption.images.decode_image` (the serving graph's own checks: header,
pixel limit, decoder) before batching, so bad files are dead-lettered with a precise reason;
`IsolatingModelHandler` catches anything that still fails a batch (e.g. a lower pixel limit baked
into the export) and retries the batch's elements one by one, so only the culprit is lost.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from vcaption import cli, images, ingest, records
from vcaption.datasets import base

DEAD = "dead_letter"
MODEL_FAILED = "model_failed"  # reason: the image decoded but the model refused it
RECORD_UNPARSABLE = base.MALFORMED_ENTRY


class ImageKey(NamedTuple):
    """What travels with an image through RunInference.

    Args:
        id: the image id: the file path for image files, `image/id` for records.
        source: the file the image came from.
        split: the record's split ("" for image files).
        record: the serialized caption record the image came from (b"" for image files).
    """

    id: str
    source: str
    split: str = ""
    record: bytes = b""


@dataclasses.dataclass(frozen=True)
class InferenceFailure:
    """The model's verdict on one element that failed even when run alone."""

    reason: str
    message: str


def is_tfrecord_pattern(pattern: str) -> bool:
    """TFRecord shards are recognised by name (`*.tfrecord`, `*.tfrecord-00000-of-00004`, ...)."""
    return ".tfrecord" in os.path.basename(pattern)


class ReadImageFiles(beam.DoFn):
    """`fileio.ReadableFile` -> `(ImageKey, bytes)`; unreadable files are dead letters."""

    def __init__(self, namespace: str):
        self.namespace = namespace

    def process(self, readable):
        path = readable.metadata.path
        Metrics.counter(self.namespace, "read").inc()
        try:
            data = readable.read()
        except Exception as error:  # noqa: BLE001 — any I/O failure of one file is that file's problem
            yield beam.pvalue.TaggedOutput(DEAD, ingest.read_failure(path, "image", path, error, path))
            return
        yield ImageKey(path, path), data


def directory_dead_letter(path: str, pattern: str) -> base.DeadLetter:
    return base.DeadLetter(
        path, "image", base.NOT_A_FILE, source=pattern,
        detail=f"{path!r} matches --input {pattern!r} but is a directory, not an image file; its files "
               "are not read (a pattern with '**' reads the files under the directories it matches)")


def matched_directories(pattern: str) -> list[str]:
    """The directories a local file pattern matches.

    `fileio.MatchFiles` lists local files only, so `images/*` silently leaves out `images/more/`.
    The files Beam matched are subtracted before asking which of the rest are directories, so the
    cost is one more listing, not a stat per file. A pattern with `**` descends into every directory
    it matches: its directories' files are read, nothing is left out. Object stores (`gs://`) have
    no directories: a pattern's `*` stops at "/" there too, but the prefixes below are not listed.
    """
    import tensorflow as tf
    from apache_beam.io.filesystems import FileSystems

    if "**" in pattern or "://" in pattern:
        return []
    files = {m.path for m in FileSystems.match([pattern])[0].metadata_list}
    return sorted(p for p in tf.io.gfile.glob(pattern) if p not in files and tf.io.gfile.isdir(p))


class ParseCaptionRecords(beam.DoFn):
    """Serialized caption record -> `(ImageKey, JPEG bytes)`; unparsable or image-less records
    are dead letters."""

    def __init__(self, namespace: str, source: str, split: str = ""):
        self.namespace, self.source, self.split = namespace, source, split

    def process(self, serialized: bytes):
        import tensorflow as tf

        Metrics.counter(self.namespace, "read").inc()
        try:
            example = tf.train.Example.FromString(serialized)
            feature = example.features.feature
            image_id = feature[records.IMAGE_ID].bytes_list.value[0].decode("utf-8")
        except Exception as error:  # noqa: BLE001 — protobuf raises DecodeError, IndexError, ...
            yield beam.pvalue.TaggedOutput(DEAD, base.DeadLetter(
                f"{self.source}:record", "record", RECORD_UNPARSABLE, source=self.source,
                detail=f"a record of {self.source!r} is not a caption record: "
                       f"{type(error).__name__}: {error}"))
            return
        encoded = feature[records.IMAGE_ENCODED].bytes_list.value if records.IMAGE_ENCODED in feature else []
        if not encoded or not encoded[0]:
            yield beam.pvalue.TaggedOutput(DEAD, base.DeadLetter(
                image_id, "image", base.IMAGE_MISSING, source=self.source,
                detail=f"record {image_id!r} of {self.source!r} holds no image (a features-only record?)"))
            return
        yield ImageKey(image_id, self.source, self.split, serialized), encoded[0]


class ValidateImages(beam.DoFn):
    """Passes `(key, bytes)` whose bytes decode with `images.decode_image`; the rest are dead letters
    (IMAGE_UNDECODABLE: not an image / corrupt / truncated; IMAGE_TOO_LARGE: header over the limit)."""

    def __init__(self, max_pixels: int = images.DEFAULT_MAX_PIXELS):
        self.max_pixels = max_pixels
        self._check = None

    def setup(self):
        import tensorflow as tf

        max_pixels = self.max_pixels

        # Traced once per worker: the same ops (and the same header checks) as the serving graph.
        @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
        def decoded_size(encoded):
            return tf.shape(images.decode_image(encoded, max_pixels))[:2]

        self._check = decoded_size

    def process(self, element):
        import tensorflow as tf

        key, data = element
        try:
            self._check(tf.constant(data))
        except tf.errors.OpError as error:
            # The reason as preprocess gives it (undecodable / too large); the detail names the input.
            reason = ingest.image_failure(key.id, key.id, error, key.source).reason
            yield beam.pvalue.TaggedOutput(DEAD, base.DeadLetter(
                key.id, "image", reason, source=key.source,
                detail=f"image {key.id!r} cannot be decoded: {ingest.error_message(error)}"))
            return
        yield element


def _counted_directory(path: str, namespace: str, pattern: str) -> base.DeadLetter:
    Metrics.counter(namespace, "read").inc()
    return directory_dead_letter(path, pattern)


class Inputs(NamedTuple):
    """What `read_images` returns."""

    valid: beam.PCollection        # (ImageKey, bytes) of images that decode
    dead: list                     # PCollections of DeadLetters (unreadable, unparsable, undecodable)
    read_counts: beam.PCollection  # ("read", 1) per input: per file, or per record


def read_images(pipeline: beam.Pipeline, patterns: Sequence[str], namespace: str,
                max_pixels: int = images.DEFAULT_MAX_PIXELS, splits: Sequence[str] = ("",)) -> Inputs:
    """Reads and validates every input (files or records), counting each once as "read".

    Args:
        pipeline: the pipeline.
        patterns: file patterns of images, or of TFRecord caption records (`is_tfrecord_pattern`).
        namespace: Beam Metrics namespace of the "read" counter.
        max_pixels: images whose header claims more pixels are dead-lettered.
        splits: the split of each pattern's records (`""` for all when not known).
    """
    if len(splits) == 1:
        splits = list(splits) * len(patterns)
    valid, dead, everything = [], [], []
    for index, (pattern, split) in enumerate(zip(patterns, splits)):
        if is_tfrecord_pattern(pattern):
            read = (pipeline
                    | f"ReadRecords{index}" >> beam.io.ReadFromTFRecord(pattern)
                    | f"ParseRecords{index}" >> beam.ParDo(
                        ParseCaptionRecords(namespace, pattern, split)).with_outputs(DEAD, main="images"))
        else:
            read = (pipeline
                    | f"MatchFiles{index}" >> fileio.MatchFiles(pattern)
                    | f"ReadMatches{index}" >> fileio.ReadMatches()
                    | f"ReadImageFiles{index}" >> beam.ParDo(ReadImageFiles(namespace)).with_outputs(
                        DEAD, main="images"))
            directories = (pipeline
                           | f"Pattern{index}" >> beam.Create([pattern])
                           | f"MatchDirectories{index}" >> beam.FlatMap(matched_directories)
                           | f"DirectoryDeadLetters{index}" >> beam.Map(
                               _counted_directory, namespace, pattern))
            dead.append(directories)
            everything.append(directories)
        valid.append(read.images)
        dead.append(read[DEAD])
        everything += [read.images, read[DEAD]]
    reads = (everything | "AllReads" >> beam.Flatten() | "CountReads" >> beam.Map(lambda _: ("read", 1)))
    checked = (valid
               | "AllImages" >> beam.Flatten()
               # Matching yields few, large bundles: spread the images over the workers.
               | "Redistribute" >> beam.Reshuffle()
               | "ValidateImages" >> beam.ParDo(ValidateImages(max_pixels)).with_outputs(DEAD, main="valid"))
    dead.append(checked[DEAD])
    return Inputs(checked.valid, dead, reads)


class IsolatingModelHandler(ModelHandler[bytes, Any, Any]):
    """A RunInference handler over a batched function of encoded images that isolates bad elements.

    Subclasses implement `load_model()` and `predict_batch(model, encoded) -> list` (one output per
    element). When a batch raises a TensorFlow error, each element is retried alone; an element that
    still fails gets an `InferenceFailure` as its inference instead of failing the bundle.

    Args:
        min_batch_size, max_batch_size: bounds of the batches `RunInference` forms
            (`beam.BatchElements`); encoded bytes of any image size batch together.
    """

    def __init__(self, min_batch_size: int = 1, max_batch_size: int = 32):
        if not 1 <= min_batch_size <= max_batch_size:
            raise ValueError(f"need 1 <= min_batch_size <= max_batch_size, got {min_batch_size}, "
                             f"{max_batch_size}")
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size)

    def predict_batch(self, model, encoded: list[bytes]) -> list:
        raise NotImplementedError(type(self))

    def run_inference(self, batch: Sequence[bytes], model,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        namespace = self.get_metrics_namespace()
        try:
            outputs = self.predict_batch(model, list(batch))
            return [PredictionResult(x, y) for x, y in zip(batch, outputs)]
        except tf.errors.OpError:
            Metrics.counter(namespace, "batches_retried_per_element").inc()
        results = []
        for encoded in batch:
            try:
                results.append(PredictionResult(encoded, self.predict_batch(model, [encoded])[0]))
            except tf.errors.OpError as error:
                reason = base.IMAGE_TOO_LARGE if "too large" in str(error) else MODEL_FAILED
                failure = InferenceFailure(reason, ingest.error_message(error))
                results.append(PredictionResult(encoded, failure))
        return results

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(x) for x in batch)


def failure_dead_letter(key: ImageKey, failure: InferenceFailure) -> base.DeadLetter:
    """The dead letter of an element the model refused even alone."""
    return base.DeadLetter(key.id, "image", failure.reason, source=key.source,
                           detail=f"image {key.id!r}: the model failed on it alone: {failure.message}")


def write_dead_letters(dead: Sequence[beam.PCollection], prefix: str, namespace: str) -> beam.PCollection:
    """Writes `<prefix>-*.jsonl`, counts "dead_lettered" (and per reason); returns the dead letters."""

    def count(letter: base.DeadLetter) -> base.DeadLetter:
        Metrics.counter(namespace, "dead_lettered").inc()
        Metrics.counter(namespace, f"dead_lettered_{letter.reason}").inc()
        return letter

    letters = (dead | "AllDeadLetters" >> beam.Flatten() | "CountDeadLetters" >> beam.Map(count))
    _ = (letters
         | "DeadLetterJson" >> beam.Map(base.DeadLetter.to_json)
         | "WriteDeadLetters" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl"))
    return letters


def dead_letter_counts(letter: base.DeadLetter) -> Iterable[tuple[str, int]]:
    """Count keys of one dead letter, for the jobs' stats files."""
    yield "dead_lettered", 1
    yield f"dead_lettered/{letter.reason}", 1


def by_prefix(counts: dict, prefix: str) -> dict:
    """{suffix: count} of the keys `prefix<suffix>`, sorted."""
    return dict(sorted((k[len(prefix):], v) for k, v in counts.items() if k.startswith(prefix)))


def write_json(path: str, value) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(value, indent=2, sort_keys=True))


def read_json(path: str):
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def summed_counts(counts: Sequence[beam.PCollection]) -> beam.PCollection:
    """Flattens (key, n) PCollections and sums them into one dict (a singleton PCollection)."""
    return (counts
            | "AllCounts" >> beam.Flatten()
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "CountsDict" >> beam.combiners.ToDict())


def query_counters(result, namespace: str) -> dict:
    """Beam Metrics counters of a finished pipeline in `namespace`: {name: committed value}."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    out = {}
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        out[counter.key.metric.name] = out.get(counter.key.metric.name, 0) + (value or 0)
    return dict(sorted(out.items()))


def add_batching_arguments(parser, model_call: str) -> None:
    """The RunInference batching and image-size flags every inference job shares."""
    parser.add_argument("--min-batch-size", type=int, default=1,
                        help="lower bound of RunInference's adaptive batch size")
    cli.add_argument(parser, "--batch-size", deprecated=["--max-batch-size"], type=int, default=32,
                     help=f"images per {model_call} at most (upper bound of RunInference's "
                          "adaptive batch size)")
    parser.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS,
                        help="dead-letter images whose header claims more pixels")
