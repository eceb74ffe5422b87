"""Images -> visual features -> caption records for fixed-feature training (Apache Beam, RunInference).

    python -m beam_jobs.extract_features --input DIR --output OUT \\
        (--encoder {small_cnn,vgg16,resnet50,...} [--weights imagenet|none] [--image-size S]
         | --model runs/NAME/model.keras) [--drop-images] [--batch-size 32] [Beam options]
    python -m beam_jobs.extract_features --input 'PATTERN' --output OUT --encoder vgg16 [--split test]

The papers train their language models on fixed CNN features (VGG-16 fc7 for LRCN, Karpathy and
m-RNN). This job computes those features once, with keyed `RunInference` over any encoder:

* `--encoder NAME`: a `vcaption.encoders.build_encoder` network (a `keras.applications` backbone
  with `--weights imagenet`, or `small_cnn`); `--weights none` gives a random encoder seeded with
  `--seed`, identical on every worker (for tests);
* `--model FILE.keras`: the image encoder of a trained captioner (`model.encoder`, at the
  captioner's image size).

Images are decoded and resized by `vcaption.images` (`decode_image` + `resize_image`, the one image
path of the package) and fed as 0..255 floats, as in training and in the export.

`--input DIR`, a `beam_jobs.preprocess` output directory: every split's records are copied to
`OUT/{split}-*.tfrecord` with `image/features` (float32[F]) and `image/features_shape` added —
every other field (captions, ids, regions, and the JPEG unless `--drop-images`) unchanged — and
`vocab.txt`, `vocab_counts.txt` (and `answers.txt`, `labels.txt` when present) are copied, so
`python -m vcaption.train --data OUT --set data.feature_dim=F` trains in precomputed-features
mode (F is printed and written to `OUT/stats.json` as `feature_dim`). Keep the images if the
training run should draw its caption grid.

`--input PATTERN` (image files, or `*.tfrecord*` caption records; repeatable): records go to
`OUT/{--split}-*.tfrecord`; records made from image files hold the id (the path), the source size
and the features, no captions (input for the exports' `caption_features` signature).

Also writes `OUT/dead_letter-*.jsonl` (inputs that could not be read, decoded or encoded, with the
reason) and `OUT/stats.json` (examples and captions per split, feature_dim, encoder, read /
written / dead-lettered). Beam Metrics counters in "vcaption.extract_features": read, encoded,
dead_lettered. read = written + dead_lettered.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import inference, options
from vcaption import data, encoders, images, records, registry
from vcaption.datasets import base
from vcaption.runtime import logs, prepared_data
from vcaption.runtime.prepared_data import PreparedData

NAMESPACE = "vcaption.extract_features"


def load_encoder(spec: dict):
    """(keras encoder [B, S, S, 3] 0..255 -> [B, F], S) from an `EncoderSpec`-like dict.

    spec keys: "model" (a captioner .keras file) or "encoder" (a `build_encoder` name) with
    "image_size", "weights" ("none" for random), "feature_dim", "seed".
    """
    import keras

    if spec.get("model"):
        captioner = registry.load_model(spec["model"])
        if getattr(captioner, "encoder_name", "features") == "features":
            raise ValueError(f"{spec['model']!r} was trained on precomputed features: "
                             "it has no image encoder")
        encoder, image_size = captioner.encoder, int(captioner.image_size)
    else:
        # Seeded: a random encoder must be the same network in every worker process.
        keras.utils.set_random_seed(spec.get("seed", 0))
        weights = None if spec.get("weights") in (None, "none") else spec["weights"]
        image_size = int(spec.get("image_size") or encoders.DEFAULT_IMAGE_SIZE[spec["encoder"]])
        encoder = encoders.build_encoder(spec["encoder"], image_size, weights=weights, trainable=False,
                                         feature_dim=spec.get("feature_dim"))
    if len(encoder.output.shape) != 2:
        raise ValueError(f"the encoder returns {encoder.output.shape}; "
                         "fixed-feature records need vectors [B, F]")
    return encoder, image_size


def make_feature_function(encoder, image_size: int, max_pixels: int = images.DEFAULT_MAX_PIXELS):
    """A traced function: encoded images string[B] -> (features float32[B, F], source sizes int32[B, 2])."""
    import tensorflow as tf

    def one_image(encoded):
        decoded = images.decode_image(encoded, max_pixels)  # [h, w, 3]
        return images.resize_image(decoded, image_size), tf.shape(decoded)[:2]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def features(encoded):
        pixels, sizes = tf.map_fn(one_image, encoded, fn_output_signature=(
            tf.TensorSpec([image_size, image_size, 3], tf.uint8), tf.TensorSpec([2], tf.int32)))
        # 0..255 floats, as the captioners feed their encoders in training and in the export.
        return encoder(tf.cast(pixels, tf.float32), training=False), sizes

    return features


class LoadedEncoder:
    """The encoder and the traced function that captured its variables (Beam shares the loaded
    model between threads through a weak reference, so it must be an object, not a tuple)."""

    def __init__(self, encoder, function):
        self.encoder, self.function = encoder, function


class FeatureEncoder(inference.IsolatingModelHandler):
    """RunInference handler: encoded images -> {"features": float32[F], "source_size": (h, w)}.

    Args:
        spec: what `load_encoder` takes.
        min_batch_size, max_batch_size: batch bounds for `RunInference`.
        max_pixels: the decoder's pixel limit.
    """

    def __init__(self, spec: dict, min_batch_size: int = 1, max_batch_size: int = 32,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS):
        super().__init__(min_batch_size, max_batch_size)
        self.spec, self.max_pixels = dict(spec), max_pixels

    def load_model(self):
        encoder, image_size = load_encoder(self.spec)
        return LoadedEncoder(encoder, make_feature_function(encoder, image_size, self.max_pixels))

    def predict_batch(self, model, encoded: list[bytes]) -> list[dict]:
        import tensorflow as tf

        features, sizes = model.function(tf.constant(encoded, tf.string))
        return [{"features": f, "source_size": tuple(int(v) for v in s)}
                for f, s in zip(features.numpy(), sizes.numpy())]

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class ToFeatureRecord(beam.DoFn):
    """(ImageKey, PredictionResult) -> (split, serialized record, counts), or a tagged dead letter."""

    def __init__(self, default_split: str, drop_images: bool):
        self.default_split, self.drop_images = default_split, drop_images

    def process(self, keyed):
        import tensorflow as tf

        key, result = keyed
        if isinstance(result.inference, inference.InferenceFailure):
            letter = inference.failure_dead_letter(key, result.inference)
            yield beam.pvalue.TaggedOutput(inference.DEAD, letter)
            return
        features = result.inference["features"]
        split = key.split or self.default_split
        if key.record:  # keep every field of the caption record; add the features
            example = tf.train.Example.FromString(key.record)
            feature = example.features.feature
            if self.drop_images:
                del feature[records.IMAGE_ENCODED]
            feature[records.IMAGE_FEATURES].float_list.value[:] = features.reshape(-1).tolist()
            feature[records.IMAGE_FEATURES_SHAPE].int64_list.value[:] = list(features.shape)
            captions = len(feature[records.CAPTION_LENGTHS].int64_list.value)
            serialized = example.SerializeToString()
        else:
            captions = 0
            serialized = records.encode_caption_example(
                key.id, [], [], source_size=result.inference["source_size"], features=features)
        Metrics.counter(NAMESPACE, "encoded").inc()
        counts = (("written", 1), (f"examples/{split}", 1), (f"captions/{split}", captions),
                  (f"feature_dim/{features.shape[-1]}", 1))
        yield split, serialized, counts


def resolve_inputs(inputs: Sequence[str]) -> tuple[list[str], list[str], str | None]:
    """(patterns, their splits, the preprocess directory or None) of the --input values."""
    import tensorflow as tf

    if len(inputs) == 1 and tf.io.gfile.isdir(inputs[0]):
        directory = inputs[0]
        if not PreparedData(directory).exists(prepared_data.VOCABULARY):
            raise FileNotFoundError(f"{directory!r} is not a beam_jobs.preprocess output (no vocab.txt); "
                                    "pass a file pattern to encode image files")
        splits = [s for s in base.SPLITS if tf.io.gfile.glob(data.split_pattern(directory, s))]
        if not splits:
            raise FileNotFoundError(f"no {{train,val,test}}-*.tfrecord shards in {directory!r}")
        return [data.split_pattern(directory, s) for s in splits], splits, directory
    return list(inputs), [""] * len(inputs), None


def make_stats(counts: dict, source_stats: dict, settings: dict) -> dict:
    dims = [int(k) for k in inference.by_prefix(counts, "feature_dim/")]
    if len(dims) > 1:
        raise ValueError(f"the encoder returned features of several sizes: {dims}")
    return {
        **source_stats,
        "examples": {s: counts.get(f"examples/{s}", 0) for s in base.present_splits(counts)},
        "captions": {s: counts.get(f"captions/{s}", 0) for s in base.present_splits(counts)},
        "feature_dim": dims[0] if dims else None,
        "features": {**settings, "read": counts.get("read", 0), "written": counts.get("written", 0),
                     "dead_lettered": {"total": counts.get("dead_lettered", 0),
                                       "by_reason": inference.by_prefix(counts, "dead_lettered/")}},
    }


def build_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace, patterns: Sequence[str],
                   splits: Sequence[str], source_stats: dict) -> None:
    out = args.output
    inputs = inference.read_images(pipeline, patterns, NAMESPACE, args.max_pixels, splits)
    handler = KeyedModelHandler(FeatureEncoder(encoder_spec(args), args.min_batch_size, args.batch_size,
                                               args.max_pixels))
    encoded = (inputs.valid
               | "RunInference" >> RunInference(handler)
               | "ToFeatureRecords" >> beam.ParDo(ToFeatureRecord(args.split, args.drop_images)).with_outputs(
                   inference.DEAD, main="records"))
    for split in sorted({s or args.split for s in splits}):
        _ = (encoded.records
             | f"Select{split.title()}" >> beam.Filter(lambda r, s=split: r[0] == s)
             | f"Serialized{split.title()}" >> beam.Map(lambda r: r[1])
             | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                 os.path.join(out, split), file_name_suffix=".tfrecord", num_shards=args.num_shards))
    dead = inference.write_dead_letters([*inputs.dead, encoded[inference.DEAD]],
                                        os.path.join(out, inference.DEAD), NAMESPACE)
    settings = {"input": list(args.input), **{k: v for k, v in encoder_spec(args).items() if v is not None}}
    _ = (inference.summed_counts([
            inputs.read_counts,
            encoded.records | "RecordCounts" >> beam.FlatMap(lambda r: r[2]),
            dead | "DeadLetterCounts" >> beam.FlatMap(inference.dead_letter_counts)])
         | "WriteStats" >> beam.Map(lambda counts: inference.write_json(
             os.path.join(out, prepared_data.STATS), make_stats(counts, source_stats, settings))))


def encoder_spec(args: argparse.Namespace) -> dict:
    if args.model:
        return {"model": args.model}
    return {"encoder": args.encoder, "image_size": args.image_size, "weights": args.weights,
            "feature_dim": args.feature_dim, "seed": args.seed}


def build_parser() -> argparse.ArgumentParser:
    parser = options.job_parser("python -m beam_jobs.extract_features", __doc__.split("\n")[0])
    parser.add_argument("--input", required=True, action="append",
                        help="a preprocess output directory, or file patterns (images / *.tfrecord*); "
                             "repeatable")
    parser.add_argument("--output", required=True, help="output directory (local or gs://)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--encoder", choices=encoders.IMAGE_ENCODERS, help="a build_encoder network")
    which.add_argument("--model", help="a trained captioner's model.keras: use its image encoder")
    parser.add_argument("--weights", default="imagenet", help="backbone weights: imagenet, a path, or none")
    parser.add_argument("--image-size", type=int, default=None, help="encoder input side (default: its own)")
    parser.add_argument("--feature-dim", type=int, default=None, help="small_cnn output size")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed of a random encoder")
    parser.add_argument("--split", default="test", help="split of records made from file patterns")
    parser.add_argument("--drop-images", action="store_true", help="leave the JPEGs out of the records")
    inference.add_batching_arguments(parser, "encoder call")
    parser.add_argument("--num-shards", type=int, default=2, help="shards per split; 0: the runner decides")
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the job's options, Beam pipeline arguments); exits with status 2 on anything else."""
    args, beam_args = options.parse(build_parser(), argv)
    return args, beam_args


def execute(args: argparse.Namespace, beam_args: Sequence[str]) -> dict:
    """Runs the job on parsed options; returns OUT/stats.json as a dict, plus the Beam counters
    under "counters"."""
    import tensorflow as tf

    patterns, splits, directory = resolve_inputs(args.input)
    source_stats = {}
    tf.io.gfile.makedirs(args.output)
    if directory is not None:
        # Not its stats.json: this job writes its own, last, so that it marks a finished output.
        source = PreparedData(directory)
        source.copy_assets(args.output, prepared_data.VOCABULARIES)
        if source.exists(prepared_data.STATS):
            source_stats = source.stats
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(pipeline, args, patterns, splits, source_stats)
    result = pipeline.run()
    result.wait_until_finish()
    stats = PreparedData(args.output).stats
    stats["counters"] = inference.query_counters(result, NAMESPACE)
    summary = stats["features"]
    print(f"extract_features: read={summary['read']} written={summary['written']} "
          f"dead_lettered={summary['dead_lettered']['total']} {summary['dead_lettered']['by_reason']} "
          f"examples={stats['examples']} feature_dim={stats['feature_dim']} -> {args.output}")
    if directory is not None:
        print(f"train on them: python -m vcaption.train --data {args.output} "
              f"--set data.feature_dim={stats['feature_dim']}")
    return stats


def run(argv: Sequence[str] | None = None) -> dict:
    """Runs the job on a command line (without the program name); see `execute`."""
    return execute(*parse_args(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.verbose)
    execute(args, beam_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
