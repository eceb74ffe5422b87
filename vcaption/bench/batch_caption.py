"""Throughput of `beam_jobs.batch_caption` with 1 and 2 DirectRunner worker processes.

    python -m vcaption.bench batch_caption [--images 2000] [--model saved_models/NAME/VERSION]
        [--max-batch-size 32]

Generates the shapes world's images (or uses `--images-dir`), runs the batch captioning job twice in
one process — `--direct_running_mode multi_processing` with 1 then 2 workers — and prints images/s
for each and their ratio. Without `--model` it exports an untrained small LRCN-2f (small_cnn at
32x32, beam 3) first: the figure is the job's overhead plus a small model, not a production model's
speed. Worker start-up (each process imports TensorFlow and loads the SavedModel) is included, as a
user would see it; use more images to amortise it.

Example output (2 shared CPU cores; see the README):

    batch_caption  workers=1  images=2000  time=...s  images/s=...
    batch_caption  workers=2  images=2000  time=...s  images/s=...
    speed-up 2 workers / 1 worker: ...x
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from vcaption.bench import report_worker_scaling

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


def _run(model: str, pattern: str, output: str, workers: int, max_batch_size: int) -> tuple[float, dict]:
    from beam_jobs import batch_caption

    start = time.perf_counter()
    stats = batch_caption.run([
        "--model", model, "--input", pattern, "--output", output,
        "--max-batch-size", str(max_batch_size), "--direct_num_workers", str(workers),
        "--direct_running_mode", "multi_processing"])
    return time.perf_counter() - start, stats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcaption.bench batch_caption")
    parser.add_argument("--images", type=int, default=2000, help="shapes images to generate")
    parser.add_argument("--images-dir", default=None, help="caption these image files instead")
    parser.add_argument("--model", default=None, help="SavedModel; default: an untrained tiny LRCN")
    parser.add_argument("--max-batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or export_untrained_captioner(os.path.join(tmp, "saved_models"))
        images_dir = args.images_dir
        if images_dir is None:
            from vcaption.datasets import shapes

            shapes.generate(os.path.join(tmp, "shapes"), num_images=args.images, num_videos=0)
            images_dir = os.path.join(tmp, "shapes", "images")
        pattern = os.path.join(images_dir, "*")
        rows = []
        for workers in (1, 2):
            seconds, stats = _run(model, pattern, os.path.join(tmp, f"out{workers}", "captions"),
                                  workers, args.max_batch_size)
            if stats["captioned"] + stats["dead_lettered"]["total"] != stats["read"]:
                raise RuntimeError(f"inputs lost: {stats}")
            rows.append({"workers": workers, "images": stats["read"], "captioned": stats["captioned"],
                         "seconds": round(seconds, 2), "images_per_s": round(stats["read"] / seconds, 1)})
    report_worker_scaling("batch_caption", rows)
    return 0
