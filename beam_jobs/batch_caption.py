"""Caption many images with an exported captioner (Apache Beam, keyed RunInference).

    python -m beam_jobs.batch_caption --model saved_models/NAME/VERSION --input 'PATTERN' \\
        [--input 'PATTERN2' ...] --output PREFIX [--format jsonl|coco] \\
        [--min-batch-size 1] [--batch-size 32] [--max-pixels N] [--num-shards 0] [Beam options]
    python -m beam_jobs.batch_caption --run runs/NAME --beam-size K ...   (export a width-K copy first)

`--input` patterns (local or `gs://`) match image files (JPEG/PNG/GIF/BMP), or TFRecord shards of
caption records (`*.tfrecord*`, as written by `beam_jobs.preprocess`; the id is `image/id`).
The encoded bytes go to the SavedModel's `serving_default` signature (`image_bytes` string[batch]
-> `captions` string[batch, N], `scores` float[batch, N], see `vcaption.export`) unchanged, so
images of any size batch together; the batch size bounds are the model handler's.

writes
    PREFIX-SSSSS-of-NNNNN.jsonl     --format jsonl: one line per image: {"id", "captions", "scores"}
                                    (N-best, best first; slots the beam search could not fill dropped)
    PREFIX.json                     --format coco: COCO results [{"image_id", "caption"}] (best caption;
                                    image_id is the file name's number for COCO-style names)
    PREFIX.dead_letter-*.jsonl      every input that was not captioned, with id, reason, detail, source
    PREFIX.stats.json               read, captioned, dead_lettered (total and by reason), the model
and Beam Metrics counters in the namespace "vcaption.batch_caption": read, captioned,
dead_lettered (and dead_lettered_<reason>). Every input ends in the output or in the dead letters:
read = captioned + dead_lettered.

Beam width. The export fixes the beam search (width, length, alpha, N): it is compiled into the
SavedModel's graph, and the SavedModel does not record it. So `--beam-size K` is only accepted
with `--run RUN_DIR` (a training run: model.keras + config.json), which exports the run with width K
to `PREFIX.export/` (`vcaption.export.export_run`) and captions with that export; with `--model`
the export's own width is used and `--beam-size` is refused rather than ignored.

On Dataflow see the README, "Batch captioning on Dataflow" (GPU workers, shipping the package).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import inference, options
from vcaption.caption import n_best_lists
from vcaption.runtime import logs

NAMESPACE = "vcaption.batch_caption"
SIGNATURE = "serving_default"


def export_signature(export_dir: str, signature: str = SIGNATURE) -> dict:
    """Reads a SavedModel's signature from `saved_model.pb` without loading the model.

    Returns:
        {"inputs": sorted input names, "outputs": sorted output names, "n_best": N (or None)}.

    Raises:
        FileNotFoundError / ValueError naming the export when it is missing or has no such signature.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{export_dir!r} is not a SavedModel directory (no saved_model.pb); "
                                "pass a version directory such as saved_models/NAME/1")
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        proto.ParseFromString(f.read())
    signatures = proto.meta_graphs[0].signature_def
    if signature not in signatures:
        raise ValueError(f"export {export_dir!r} has no signature {signature!r} "
                         f"(it has {sorted(signatures)})")
    sig = signatures[signature]
    captions = sig.outputs.get("captions")
    dims = [d.size for d in captions.tensor_shape.dim] if captions is not None else []
    return {"inputs": sorted(sig.inputs), "outputs": sorted(sig.outputs),
            "n_best": dims[1] if len(dims) == 2 and dims[1] > 0 else None}


def check_captioner_export(export_dir: str) -> dict:
    """`export_signature`, refusing exports whose serving_default does not caption image bytes."""
    sig = export_signature(export_dir)
    if sig["inputs"] != ["image_bytes"] or not {"captions", "scores"} <= set(sig["outputs"]):
        raise ValueError(f"export {export_dir!r}: {SIGNATURE} takes {sig['inputs']} and returns "
                         f"{sig['outputs']}; batch captioning needs image_bytes -> captions, scores "
                         "(an export of a features-only model cannot caption images)")
    return sig


class SavedModelCaptioner(inference.IsolatingModelHandler):
    """RunInference handler: encoded images -> N-best captions with a SavedModel's serving_default.

    Loads the export with `tf.saved_model.load` (TensorFlow only, no Keras) once per worker and calls
    its signature on a batch of encoded bytes. `apache_beam.ml.inference.tensorflow_inference`'s
    handlers cannot do this: they load with `tf.keras.models.load_model` (Keras 3 reads .keras files
    only) and call the model on a stacked numeric tensor, not a named signature on strings.

    Args:
        export_dir: the SavedModel version directory.
        min_batch_size, max_batch_size: batch bounds for `RunInference`.

    Example:
    ```python
    handler = KeyedModelHandler(SavedModelCaptioner("saved_models/lrcn_2f/1", max_batch_size=16))
    results = keyed_bytes | RunInference(handler)  # (key, PredictionResult(bytes, {"captions", "scores"}))
    ```
    """

    def __init__(self, export_dir: str, min_batch_size: int = 1, max_batch_size: int = 32):
        super().__init__(min_batch_size, max_batch_size)
        self.export_dir = export_dir

    def load_model(self):
        import tensorflow as tf

        # The loaded object must stay referenced: its signatures only hold weak references to it.
        return tf.saved_model.load(self.export_dir)

    def predict_batch(self, model, encoded: list[bytes]) -> list[dict]:
        import tensorflow as tf

        out = model.signatures[SIGNATURE](image_bytes=tf.constant(encoded, tf.string))
        return n_best_lists(out["captions"].numpy(), out["scores"].numpy())

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class RouteResults(beam.DoFn):
    """(ImageKey, PredictionResult) -> caption row, or a tagged dead letter for model failures."""

    def process(self, keyed):
        key, result = keyed
        if isinstance(result.inference, inference.InferenceFailure):
            letter = inference.failure_dead_letter(key, result.inference)
            yield beam.pvalue.TaggedOutput(inference.DEAD, letter)
            return
        Metrics.counter(NAMESPACE, "captioned").inc()
        yield {"id": key.id, **result.inference}


def coco_image_id(image_id: str):
    """COCO results want the numeric image id: `.../000000397133.jpg` -> 397133; other ids stay strings."""
    stem = os.path.splitext(os.path.basename(image_id))[0]
    digits = re.fullmatch(r"(?:COCO_[a-z0-9]+_)?0*(\d+)", stem)
    return int(digits.group(1)) if digits else image_id


def coco_results(rows: Sequence[dict]) -> list[dict]:
    """Caption rows -> COCO results (best caption per image), sorted by id."""
    results = [{"image_id": coco_image_id(r["id"]), "caption": r["captions"][0] if r["captions"] else ""}
               for r in rows]
    return sorted(results, key=lambda r: (isinstance(r["image_id"], str), r["image_id"]))


def output_paths(prefix: str) -> dict:
    return {"jsonl": f"{prefix}-*.jsonl", "coco": f"{prefix}.json",
            "dead_letter": f"{prefix}.dead_letter", "stats": f"{prefix}.stats.json"}


def build_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace, model_dir: str) -> None:
    paths = output_paths(args.output)
    inputs = inference.read_images(pipeline, args.input, NAMESPACE, args.max_pixels)
    handler = KeyedModelHandler(SavedModelCaptioner(model_dir, args.min_batch_size, args.batch_size))
    routed = (inputs.valid
              | "RunInference" >> RunInference(handler)
              | "RouteResults" >> beam.ParDo(RouteResults()).with_outputs(inference.DEAD, main="captions"))
    captions = routed.captions
    if args.format == "jsonl":
        _ = (captions
             | "CaptionJson" >> beam.Map(lambda row: json.dumps(row, ensure_ascii=False))
             | "WriteCaptions" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl",
                                                      num_shards=args.num_shards))
    else:
        _ = (captions
             | "GatherCaptions" >> beam.combiners.ToList()
             | "WriteCocoResults" >> beam.Map(
                 lambda rows: inference.write_json(paths["coco"], coco_results(rows))))
    dead = inference.write_dead_letters([*inputs.dead, routed[inference.DEAD]], paths["dead_letter"],
                                        NAMESPACE)

    settings = {"model": model_dir, "input": list(args.input), "format": args.format,
                "output": args.output}
    _ = (inference.summed_counts([
            inputs.read_counts,
            captions | "CaptionCounts" >> beam.Map(lambda _: ("captioned", 1)),
            dead | "DeadLetterCounts" >> beam.FlatMap(inference.dead_letter_counts)])
         | "WriteStats" >> beam.Map(
             lambda counts: inference.write_json(paths["stats"], make_stats(counts, settings))))


def make_stats(counts: dict, settings: dict) -> dict:
    return {**settings, "read": counts.get("read", 0), "captioned": counts.get("captioned", 0),
            "dead_lettered": {"total": counts.get("dead_lettered", 0),
                              "by_reason": inference.by_prefix(counts, "dead_lettered/")}}


def build_parser() -> argparse.ArgumentParser:
    parser = options.job_parser("python -m beam_jobs.batch_caption", __doc__.split("\n")[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="SavedModel version directory (vcaption.export), local or gs://")
    model.add_argument("--run", help="training run directory: export it (with --beam-size) and use that")
    parser.add_argument("--input", required=True, action="append",
                        help="file pattern of images or of *.tfrecord* caption records; repeatable")
    parser.add_argument("--output", required=True, help="output prefix (local or gs://)")
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "coco"], help="output format")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="beam width; needs --run (an export's width is fixed in its graph)")
    inference.add_batching_arguments(parser, "SavedModel call")
    parser.add_argument("--num-shards", type=int, default=0, help="JSONL shards; 0: the runner decides")
    return parser


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the job's options, Beam pipeline arguments); exits with status 2 on anything else."""
    parser = build_parser()
    args, beam_args = options.parse(parser, argv)
    if args.beam_size is not None and args.model:
        parser.error("--beam-size needs --run: the beam width of a SavedModel is fixed when it is "
                     "exported (python -m vcaption.export --run RUN --beam-size K makes another)")
    if args.beam_size is not None and args.beam_size < 1:
        parser.error("--beam-size must be >= 1")
    return args, beam_args


def resolve_model(args: argparse.Namespace) -> str:
    """The SavedModel to use: --model, or a fresh export of --run (with --beam-size)."""
    if args.model:
        return args.model
    from vcaption import export

    return export.export_run(args.run, output=f"{args.output}.export", beam_size=args.beam_size)


def execute(args: argparse.Namespace, beam_args: Sequence[str]) -> dict:
    """Runs the job on parsed options; returns PREFIX.stats.json as a dict, plus the Beam counters
    under "counters"."""
    model_dir = resolve_model(args)
    signature = check_captioner_export(model_dir)
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
    build_pipeline(pipeline, args, model_dir)
    result = pipeline.run()
    result.wait_until_finish()
    stats = inference.read_json(output_paths(args.output)["stats"])
    stats["n_best"] = signature["n_best"]
    stats["counters"] = inference.query_counters(result, NAMESPACE)
    dead = stats["dead_lettered"]
    print(f"batch_caption: read={stats['read']} captioned={stats['captioned']} "
          f"dead_lettered={dead['total']} {dead['by_reason']} -> {args.output} ({args.format}); "
          f"model {model_dir}")
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
