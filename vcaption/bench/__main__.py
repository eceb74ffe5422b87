"""python -m vcaption.bench {preprocess,...} [options]: run one benchmark and print its figures."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "preprocess": "vcaption.bench.preprocess",
    "decode": "vcaption.bench.decode",
    "train": "vcaption.bench.train",
    "batch_caption": "vcaption.bench.batch_caption",
    "serving": "vcaption.bench.serving",
    "regions": "vcaption.bench.regions",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m vcaption.bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
