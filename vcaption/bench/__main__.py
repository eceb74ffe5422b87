"""python -m vcaption.bench {preprocess,...} [options]: run one benchmark and print its figures."""

from __future__ import annotations

import argparse
import importlib
import sys

from vcaption import cli

BENCHMARKS = {
    "preprocess": ("vcaption.bench.preprocess",
                   "beam_jobs.preprocess images/s with 1 and 2 DirectRunner workers"),
    "decode": ("vcaption.bench.decode", "in-graph beam search vs a Python-loop beam search (im2txt)"),
    "train": ("vcaption.bench.train", "LRCN-2f training examples/s and GFLOP/s vs the GEMM peaks"),
    "batch_caption": ("vcaption.bench.batch_caption",
                      "beam_jobs.batch_caption images/s with 1 and 2 DirectRunner workers"),
    "serving": ("vcaption.bench.serving", "development server, batched vs unbatched: QPS and p99"),
    "regions": ("vcaption.bench.regions", "region features: crop-and-encode vs one shared feature map"),
}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<14} {about}" for name, (_, about) in BENCHMARKS.items())
    parser = cli.make_parser(
        "python -m vcaption.bench", "Run one benchmark and print its figures.", verbose=False,
        epilog=f"benchmarks:\n{listing}\n\n`python -m vcaption.bench NAME --help` shows a benchmark's "
               "options (--verbose among them).")
    parser.add_argument("benchmark", choices=list(BENCHMARKS), metavar="NAME", help="the benchmark to run")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own options")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return importlib.import_module(BENCHMARKS[args.benchmark][0]).main(args.options)


if __name__ == "__main__":
    sys.exit(main())
