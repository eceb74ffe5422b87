"""Throughput of `beam_jobs.batch_caption` with 1 and 2 DirectRunner worker processes.

    python -m vcaption.bench batch_caption [--num-images 2000 | --images DIR|PATTERN]
        [--model saved_models/NAME/VERSION] [--batch-size 32]

Generates the shapes world's images (or captions `--images`), runs the batch captioning job twice —
`python -m beam_jobs.batch_caption ... --direct_running_mode multi_processing` with 1 then 2
workers, each as the command a user types, in a subprocess — and prints images/s for each and
their ratio. Without `--model` it exports an untrained small LRCN-2f (small_cnn at 32x32, beam 3)
first: the figure is the job's overhead plus a small model, not a production model's speed. The
time is the whole command's: interpreter start-up and, in each worker process, the TensorFlow
import and the SavedModel load are included, as a user would see them; use more images to
amortise them.

Example output (2 shared CPU cores; see the README):

    batch_caption  workers=1  images=2000  time=...s  images/s=...
    batch_caption  workers=2  images=2000  time=...s  images/s=...
    speed-up 2 workers / 1 worker: ...x
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

from vcaption import cli
from vcaption.bench import report_worker_scaling, run_job
from vcaption.runtime import logs

TINY_WORDS = ("a red blue green yellow circle square triangle diamond small big left right of the on and"
              .split())


def untrained_captioner(image_size: int = 32, seed: int = 0):
    """(a small untrained LRCN-2f with a small_cnn encoder, its vocabulary tokens). For tests and benchmarks.

    Its decoder weights are drawn ~3x larger than a Glorot init so that different images get
    different captions (a fresh init says the same thing for every image, which would make parity
    checks between two captioning paths weak).
    """
    import keras
    import numpy as np

    from vcaption import text
    from vcaption.captioning.lrcn import LRCNCaptioner

    tokens = [*text.RESERVED_TOKENS, *TINY_WORDS]
    keras.utils.set_random_seed(seed)
    model = LRCNCaptioner(vocab_size=len(tokens), variant="2f", hidden_units=8, embedding_dim=6,
                          image_embedding_dim=5, encoder="small_cnn", image_size=image_size,
                          feature_dim=6, dropout=0.0)
    rng = np.random.default_rng(seed)
    encoder_paths = {variable.path for variable in model.encoder.variables}
    for variable in model.trainable_variables:
        decoder_matrix = "kernel" in variable.path or "embeddings" in variable.path
        if variable.path not in encoder_paths and decoder_matrix:
            scale = 3.0 / np.sqrt(variable.shape[0])
            variable.assign(rng.normal(0.0, scale, size=variable.shape).astype("float32"))
    return model, tokens


def export_untrained_captioner(root: str, name: str = "tiny", image_size: int = 32, beam_size: int = 3,
                               n_best: int = 2, max_length: int = 8, seed: int = 0) -> str:
    """Exports `untrained_captioner` to `<root>/<name>/<version>` (vocabulary `<root>/<name>_vocab.txt`)."""
    from vcaption.captioning import export
    from vcaption.config import DecodeConfig

    model, tokens = untrained_captioner(image_size, seed)
    os.makedirs(root, exist_ok=True)
    vocab_path = os.path.join(root, f"{name}_vocab.txt")
    with open(vocab_path, "w") as f:
        f.write("\n".join(tokens) + "\n")
    decode = DecodeConfig(beam_size=beam_size, max_length=max_length, alpha=0.0, n_best=n_best)
    return export.export_captioner(model, vocab_path, root, name, image_size, decode)


def _run(model: str, pattern: str, output: str, workers: int, batch_size: int,
         verbose: bool) -> tuple[float, dict]:
    seconds = run_job("beam_jobs.batch_caption", [
        "--model", model, "--input", pattern, "--output", output, "--batch-size", str(batch_size),
        "--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"], verbose)
    with open(f"{output}.stats.json") as f:
        return seconds, json.load(f)


class _ImagesOrCount(argparse.Action):
    """`--images DIR|PATTERN`; a bare number is the old `--images N`, a count (`--num-images`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--images" and values.isdigit() and not os.path.exists(values):
            cli.warn_deprecated("--images N (a count)", "--num-images N")
            namespace.num_images = int(values)
        else:
            namespace.images = values


def build_parser():
    parser = cli.make_parser("python -m vcaption.bench batch_caption", __doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=2000,
                        help="shapes images to generate (without --images)")
    cli.add_argument(parser, "--images", deprecated=["--images-dir"], action=_ImagesOrCount, default=None,
                     help="caption these image files instead: a directory or a file pattern")
    parser.add_argument("--model", default=None,
                        help="SavedModel version directory; default: export an untrained tiny LRCN")
    cli.add_argument(parser, "--batch-size", deprecated=["--max-batch-size"], type=int, default=32,
                     help="the job's --batch-size")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_untrained_captioner(os.path.join(tmp, "saved_models"))
        pattern = args.images
        if pattern is None:
            from vcaption.datasets import shapes

            shapes.generate(os.path.join(tmp, "shapes"), num_images=args.num_images, num_videos=0)
            pattern = os.path.join(tmp, "shapes", "images")
        if os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        rows = []
        for workers in (1, 2):
            seconds, stats = _run(model, pattern, os.path.join(tmp, f"out{workers}", "captions"),
                                  workers, args.batch_size, args.verbose)
            if stats["captioned"] + stats["dead_lettered"]["total"] != stats["read"]:
                raise RuntimeError(f"inputs lost: {stats}")
            rows.append({"workers": workers, "images": stats["read"], "captioned": stats["captioned"],
                         "seconds": round(seconds, 2), "images_per_s": round(stats["read"] / seconds, 1)})
    report_worker_scaling("batch_caption", rows)
    return 0
