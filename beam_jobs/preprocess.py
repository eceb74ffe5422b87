"""Preprocess a dataset in its published format into sharded TFRecords (Apache Beam).

    python -m beam_jobs.preprocess --format {karpathy,coco,flickr8k,vqa,vg,msvd} \\
        --input PATH [--images DIR] --output DIR [--min-count 5] [--image-size 256] \\
        [--max-length 16] [--max-frames 32 --frame-stride 1 --optical-flow] [Beam pipeline options]

writes
    DIR/vocab.txt                    reserved tokens, then words with >= min-count train occurrences
    DIR/vocab_counts.txt             train count of each vocab.txt line (<end>: captions, <unk>: the rest)
    DIR/answers.txt, DIR/labels.txt  answer vocabulary (VQA, top K train answers) / activity labels (video)
    DIR/{train,val,test}-*.tfrecord  the records (`vcaption.records`)
    DIR/stats.json                   examples per split, vocab_words, dead letters by reason, lengths
    DIR/dead_letter-*.jsonl          every input that did not become a record, with its reason

Options other than the job's own must be Apache Beam pipeline options (`beam_jobs.options`): a
mistyped `--image_size` is an error, not a Beam option silently dropped. Locally it runs on the
DirectRunner (`--direct_num_workers 2 --direct_running_mode multi_processing` for two processes).
On Dataflow the same command takes the usual options; the workers need this package, shipped as
an sdist (see README, "Preprocessing on Dataflow"):

    python -m build --sdist && python -m beam_jobs.preprocess --format coco \\
        --input gs://BUCKET/coco/annotations/captions_train2017.json --output gs://BUCKET/coco-records \\
        --runner DataflowRunner --project PROJECT --region REGION \\
        --temp_location gs://BUCKET/tmp --extra_package dist/vcaption-0.1.0.tar.gz

The vocabulary (and the answer vocabulary) is counted on the train split only, so words that occur
only in val/test map to <unk>.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import options
from vcaption import ingest, text
from vcaption.datasets import base, registry
from vcaption.runtime import logs, prepared_data
from vcaption.runtime.prepared_data import PreparedData

DEAD = "dead_letter"
METRICS_NAMESPACE = "vcaption.preprocess"


class ReadAnnotations(beam.DoFn):
    """Input path -> canonical examples, and the reader's own dead letters (tagged)."""

    def __init__(self, fmt: str, images_dir: str | None, options: dict):
        self.fmt, self.images_dir, self.options = fmt, images_dir, options

    def process(self, input_path: str):
        for item in registry.read(self.fmt, input_path, self.images_dir, **self.options):
            if isinstance(item, base.DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD, item)
            else:
                Metrics.counter(METRICS_NAMESPACE, "read").inc()
                yield item


class PrepareText(beam.DoFn):
    """Tokenizes captions/phrases/questions; empty ones go to the dead letters."""

    def process(self, example):
        for item in ingest.prepare_text(example):
            if isinstance(item, base.DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD, item)
            else:
                yield item


class EncodeRecords(beam.DoFn):
    """Prepared example -> `ingest.Encoded` (or a tagged dead letter)."""

    def __init__(self, config: ingest.IngestConfig):
        self.config = config
        self._encoder = None

    def process(self, prepared, vocabulary, answers, labels):
        if self._encoder is None:  # side inputs are only visible here, not in setup()
            self._encoder = ingest.RecordEncoder(self.config, vocabulary[0], answers, labels)
        result = self._encoder.encode(prepared)
        if isinstance(result, base.DeadLetter):
            yield beam.pvalue.TaggedOutput(DEAD, result)
        else:
            Metrics.counter(METRICS_NAMESPACE, f"written_{result.split}").inc()
            yield result


def build_vocabulary(word_counts: Iterable[tuple[str, int]], min_count: int) -> tuple[list[str], list[int]]:
    """(tokens in id order, their train counts): reserved tokens, then kept words by count, word."""
    counts = dict(word_counts)
    end_count = counts.pop(text.END, 0)
    kept = sorted(((w, c) for w, c in counts.items() if c >= min_count and w not in text.RESERVED_TOKENS),
                  key=lambda wc: (-wc[1], wc[0]))
    unk_count = sum(counts.values()) - sum(c for _, c in kept)
    tokens = [*text.RESERVED_TOKENS, *(w for w, _ in kept)]
    return tokens, [0, 0, end_count, unk_count, *(c for _, c in kept)]


def top_answers(answer_counts: Iterable[tuple[str, int]], k: int) -> list[str]:
    """The K most frequent train answers (ties by answer text), Antol et al. §5."""
    return [a for a, _ in sorted(answer_counts, key=lambda ac: (-ac[1], ac[0]))[:k]]


def _train_words(prepared: ingest.Prepared) -> Iterable[str]:
    yield from ingest.vocabulary_words(prepared)
    # Each caption ends with <end>: its count is the frequency Karpathy's softmax bias needs.
    for _ in prepared.caption_tokens + prepared.region_tokens:
        yield text.END


def _answers(prepared: ingest.Prepared) -> Iterable[str]:
    return (ingest.normalize_answer(a) for a in getattr(prepared.example, "answers", ()))


def _dead_letter_counts(dead: base.DeadLetter) -> Iterable[tuple[str, int]]:
    Metrics.counter(METRICS_NAMESPACE, f"dead_letter_{dead.reason}").inc()
    yield f"dead_letter/reason/{dead.reason}", 1
    yield f"dead_letter/unit/{dead.unit}", 1


def _write_text(path: str, content: str) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(content)


def _group(counts: dict, prefix: str) -> dict:
    items = {k[len(prefix):]: v for k, v in counts.items() if k.startswith(prefix)}
    return dict(sorted(items.items(), key=lambda kv: (len(kv[0]), kv[0])))


def make_stats(counts: dict, vocabulary, answers, labels, settings: dict) -> dict:
    """stats.json from the summed counts of all records and dead letters."""
    by_unit = _group(counts, "dead_letter/unit/")
    splits = base.present_splits(counts)
    return {
        **settings,
        "examples": {split: counts.get(f"examples/{split}", 0) for split in splits},
        "captions": {split: counts.get(f"captions/{split}", 0) for split in splits},
        "regions": {split: counts.get(f"regions/{split}", 0) for split in splits},
        "vocab_words": len(vocabulary[0]) - len(text.RESERVED_TOKENS),
        "vocab_size": len(vocabulary[0]),
        "answers": len(answers),
        "labels": list(labels),
        "questions_without_top_answer": _group(counts, "questions_without_top_answer/"),
        "questions_without_answers": _group(counts, "questions_without_answers/"),
        "answers_outside_top_k": _group(counts, "answers_outside_top_k/"),
        "caption_length_histogram": _group(counts, "caption_length/"),
        "truncated_captions": counts.get("truncated_captions", 0),
        "dead_letter": {"total": sum(by_unit.values()), "by_reason": _group(counts, "dead_letter/reason/"),
                        "by_unit": by_unit},
    }


def build_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace) -> None:
    config = ingest.IngestConfig(image_size=args.image_size, max_length=args.max_length,
                                 max_pixels=args.max_pixels, max_frames=args.max_frames,
                                 frame_stride=args.frame_stride, optical_flow=args.optical_flow,
                                 flow_scale=args.flow_scale)
    out = args.output
    read = (pipeline
            | "ListInput" >> beam.Create([args.input])
            | "ReadAnnotations" >> beam.ParDo(
                ReadAnnotations(args.format, args.images, dict(args.reader_option))
            ).with_outputs(DEAD, main="examples"))
    prepared = (read.examples
                | "Redistribute" >> beam.Reshuffle()
                | "PrepareText" >> beam.ParDo(PrepareText()).with_outputs(DEAD, main="prepared"))
    train = prepared.prepared | "TrainSplitOnly" >> beam.Filter(lambda p: p.split == "train")

    vocabulary = (train
                  | "VocabularyWords" >> beam.FlatMap(_train_words)
                  | "CountWords" >> beam.combiners.Count.PerElement()
                  | "GatherWordCounts" >> beam.combiners.ToList()
                  | "BuildVocabulary" >> beam.Map(build_vocabulary, args.min_count))
    answers = (train
               | "TrainAnswers" >> beam.FlatMap(_answers)
               | "CountAnswers" >> beam.combiners.Count.PerElement()
               | "GatherAnswerCounts" >> beam.combiners.ToList()
               | "TopAnswers" >> beam.Map(top_answers, args.top_answers))
    labels = (train
              | "Labels" >> beam.FlatMap(lambda p: [p.example.label] if getattr(p.example, "label", "") else [])
              | "DistinctLabels" >> beam.Distinct()
              | "GatherLabels" >> beam.combiners.ToList()
              | "SortLabels" >> beam.Map(sorted))

    encoded = prepared.prepared | "EncodeRecords" >> beam.ParDo(
        EncodeRecords(config), beam.pvalue.AsSingleton(vocabulary), beam.pvalue.AsSingleton(answers),
        beam.pvalue.AsSingleton(labels)).with_outputs(DEAD, main="records")

    for split in base.SPLITS:
        _ = (encoded.records
             | f"Select{split.title()}" >> beam.Filter(lambda e, s=split: e.split == s)
             | f"Serialized{split.title()}" >> beam.Map(lambda e: e.serialized)
             | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                 os.path.join(out, split), file_name_suffix=".tfrecord", num_shards=args.num_shards))

    dead = (read[DEAD], prepared[DEAD], encoded[DEAD]) | "AllDeadLetters" >> beam.Flatten()
    _ = (dead
         | "DeadLetterJson" >> beam.Map(base.DeadLetter.to_json)
         | "WriteDeadLetters" >> beam.io.WriteToText(os.path.join(out, DEAD), file_name_suffix=".jsonl"))

    _ = vocabulary | "WriteVocabulary" >> beam.Map(lambda v: (
        _write_text(os.path.join(out, prepared_data.VOCABULARY), "\n".join(v[0]) + "\n"),
        _write_text(os.path.join(out, prepared_data.WORD_COUNTS), "\n".join(map(str, v[1])) + "\n")))
    _ = answers | "WriteAnswers" >> beam.Map(
        lambda a: _write_text(os.path.join(out, prepared_data.ANSWERS), "".join(x + "\n" for x in a)))
    _ = labels | "WriteLabels" >> beam.Map(
        lambda ls: _write_text(os.path.join(out, prepared_data.LABELS), "".join(x + "\n" for x in ls)))

    settings = {"format": args.format, "input": args.input, "image_size": args.image_size,
                "max_length": args.max_length, "min_count": args.min_count}
    _ = ((encoded.records | "RecordCounts" >> beam.FlatMap(lambda e: e.counts),
          dead | "DeadLetterCounts" >> beam.FlatMap(_dead_letter_counts))
         | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombinePerKey(sum)
         | "CountsDict" >> beam.combiners.ToDict()
         | "MakeStats" >> beam.Map(make_stats, beam.pvalue.AsSingleton(vocabulary),
                                   beam.pvalue.AsSingleton(answers), beam.pvalue.AsSingleton(labels),
                                   settings)
         | "WriteStats" >> beam.Map(lambda s: _write_text(os.path.join(out, prepared_data.STATS),
                                                          json.dumps(s, indent=2, sort_keys=True))))


def _key_value(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--reader-option expects KEY=VALUE, got {option!r}")
    return key.replace("-", "_"), value


def build_parser() -> argparse.ArgumentParser:
    parser = options.job_parser("python -m beam_jobs.preprocess", __doc__.split("\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(registry.READERS),
                        help="the dataset's published format")
    parser.add_argument("--input", required=True,
                        help="annotation file or directory (local or gs://); coco and msvd also take a "
                             "comma-separated list or a glob of files")
    parser.add_argument("--images", default=None,
                        help="image (or video) directory, local or gs://; the annotations' file names are "
                             "read only inside it; default: the format's layout")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    parser.add_argument("--min-count", type=int, default=5, help="keep words seen this often in train")
    parser.add_argument("--image-size", type=int, default=256, help="side of the stored square JPEGs")
    parser.add_argument("--max-length", type=int, default=16, help="truncate captions to this many words")
    parser.add_argument("--max-pixels", type=int, default=ingest.images.DEFAULT_MAX_PIXELS,
                        help="dead-letter images whose header claims more pixels (decompression bombs)")
    parser.add_argument("--top-answers", type=int, default=1000, help="VQA answer vocabulary size K")
    parser.add_argument("--max-frames", type=int, default=32, help="frames kept per video")
    parser.add_argument("--frame-stride", type=int, default=1, help="keep every n-th video frame")
    parser.add_argument("--optical-flow", action="store_true",
                        help="also store a Farneback flow image per video frame (LRCN §4)")
    parser.add_argument("--flow-scale", type=float, default=ingest.images.DEFAULT_FLOW_SCALE,
                        help="flow images: grey levels per pixel of displacement")
    parser.add_argument("--num-shards", type=int, default=4,
                        help="shards per split; 0 lets the runner decide (use it on Dataflow at scale)")
    parser.add_argument("--reader-option", type=_key_value, action="append", default=[],
                        metavar="KEY=VALUE", help="passed to the reader, e.g. split=test; repeatable")
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the job's options, Beam pipeline arguments); exits with status 2 on anything else."""
    return options.parse(build_parser(), argv)


def execute(args: argparse.Namespace, beam_args: Sequence[str]) -> dict:
    """Runs the job on parsed options and returns stats.json as a dict."""
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        build_pipeline(pipeline, args)
    stats = PreparedData(args.output).stats
    for split in base.OPTIONAL_SPLITS:  # Beam writes its fixed number of shards even for no records
        if split not in stats["examples"]:
            for path in tf.io.gfile.glob(os.path.join(args.output, f"{split}-*.tfrecord")):
                tf.io.gfile.remove(path)
    written = sum(stats["examples"].values())
    print(f"preprocess: {written} records {stats['examples']}, vocab_words={stats['vocab_words']}, "
          f"dead letters={stats['dead_letter']['total']} {stats['dead_letter']['by_reason']} -> {args.output}")
    return stats


def run(argv: Sequence[str] | None = None) -> dict:
    """Runs the job on a command line (without the program name); returns stats.json as a dict."""
    return execute(*parse_args(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.verbose)
    execute(args, beam_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
