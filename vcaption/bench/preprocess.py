"""Throughput of `beam_jobs.preprocess` with 1 and 2 DirectRunner worker processes.

    python -m vcaption.bench preprocess [--images 2000] [--image-size 256] [--data DIR]

Generates the shapes world (or uses --data, a Karpathy-format directory), runs the preprocess job
twice in one process — `--direct_running_mode multi_processing` with 1 then 2 workers — and prints
images/s for each and their ratio. Worker start-up (each process imports TensorFlow) is included,
as a user would see it; use more images to amortise it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from vcaption.bench import report_worker_scaling


def _run(dataset_json: str, output: str, workers: int, image_size: int) -> tuple[float, int]:
    from beam_jobs import preprocess

    start = time.perf_counter()
    stats = preprocess.run([
        "--format", "karpathy", "--input", dataset_json, "--output", output,
        "--image-size", str(image_size), "--direct_num_workers", str(workers),
        "--direct_running_mode", "multi_processing"])
    return time.perf_counter() - start, sum(stats["examples"].values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcaption.bench preprocess")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256, help="stored JPEG size")
    parser.add_argument("--data", default=None, help="directory holding dataset_shapes.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from vcaption.datasets import shapes

            data = os.path.join(tmp, "shapes")
            shapes.generate(data, num_images=args.images, num_videos=0)
        dataset_json = os.path.join(data, "dataset_shapes.json")
        rows = []
        for workers in (1, 2):
            seconds, written = _run(dataset_json, os.path.join(tmp, f"out{workers}"), workers,
                                    args.image_size)
            rows.append({"workers": workers, "images": written, "seconds": round(seconds, 2),
                         "images_per_s": round(written / seconds, 1)})
    report_worker_scaling("preprocess", rows)
    return 0
