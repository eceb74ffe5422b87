"""Throughput of `beam_jobs.preprocess` with 1 and 2 DirectRunner worker processes.

    python -m vcaption.bench preprocess [--num-images 2000] [--image-size 256] [--input DIR]

Generates the shapes world (or uses `--input`, a Karpathy-format dataset: a `dataset_*.json` file
or the directory holding `dataset_shapes.json`), runs the preprocess job twice —
`python -m beam_jobs.preprocess ... --direct_running_mode multi_processing` with 1 then 2 workers,
each as the command a user types, in a subprocess — and prints images/s for each and their ratio.
The time is the whole command's: interpreter and TensorFlow start-up, and each worker process's
own imports, included, as a user would see them; use more images to amortise them.
"""

from __future__ import annotations

import os
import tempfile

from vcaption import cli
from vcaption.bench import report_worker_scaling, run_job
from vcaption.runtime import logs
from vcaption.runtime.prepared_data import PreparedData


def _run(dataset_json: str, output: str, workers: int, image_size: int, verbose: bool) -> tuple[float, int]:
    seconds = run_job("beam_jobs.preprocess", [
        "--format", "karpathy", "--input", dataset_json, "--output", output,
        "--image-size", str(image_size), "--direct_num_workers", str(workers),
        "--direct_running_mode", "multi_processing"], verbose)
    return seconds, sum(PreparedData(output).stats["examples"].values())


def build_parser():
    parser = cli.make_parser("python -m vcaption.bench preprocess", __doc__.split("\n")[0])
    cli.add_argument(parser, "--num-images", deprecated=["--images"], type=int, default=2000,
                     help="shapes images to generate (without --input)")
    parser.add_argument("--image-size", type=int, default=256, help="stored JPEG size")
    cli.add_argument(parser, "--input", deprecated=["--data"], default=None,
                     help="a Karpathy-format dataset JSON, or a directory holding dataset_shapes.json "
                          "(default: generate the shapes world)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    with tempfile.TemporaryDirectory() as tmp:
        dataset_json = args.input
        if dataset_json is None:
            from vcaption.datasets import shapes

            dataset_json = os.path.join(tmp, "shapes")
            shapes.generate(dataset_json, num_images=args.num_images, num_videos=0)
        if os.path.isdir(dataset_json):
            dataset_json = os.path.join(dataset_json, "dataset_shapes.json")
        rows = []
        for workers in (1, 2):
            seconds, written = _run(dataset_json, os.path.join(tmp, f"out{workers}"), workers,
                                    args.image_size, args.verbose)
            rows.append({"workers": workers, "images": written, "seconds": round(seconds, 2),
                         "images_per_s": round(written / seconds, 1)})
    report_worker_scaling("preprocess", rows)
    return 0
