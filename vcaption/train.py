"""Train a preset: `python -m vcaption.train [--preset lrcn_2f] [--output runs/<preset>] [--set k=v ...]`.

With no arguments it builds the built-in shapes world (if absent), preprocesses it with the Beam
job, trains the `lrcn_2f` captioner and its baselines, evaluates them on the test split, exports
a SavedModel and writes `<output>/metrics.json`. Every preset runs the same way, through its
family's task (`vcaption.runtime.task`); `--list-presets` names them, `--print-config` shows the
resolved configuration without running it.

Run it again after a crash (even `kill -9`) and it resumes from the last checkpoint interval; a
finished model is loaded, not retrained. The run directory is self-contained: it holds the
config (absolute paths), the vocabulary and the other assets of its data, so `python -m
vcaption.export --run DIR` works from anywhere, even after the preprocessing output is gone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vcaption import config as config_lib
from vcaption import presets
from vcaption.metrics import caption as caption_metrics
from vcaption.runtime import devices, logs


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m vcaption.train", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="lrcn_2f", choices=presets.preset_names(), metavar="NAME",
                        help="what to train (--list-presets names them)")
    parser.add_argument("--list-presets", action="store_true", help="name every preset with one line each, and exit")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration as JSON, and exit")
    parser.add_argument("--output", default=None, help="run directory (default: runs/<preset>)")
    parser.add_argument("--data", default=None, help="a beam_jobs.preprocess output directory "
                                                      "(default: the built-in shapes world)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--strategy", default="default", choices=devices.STRATEGIES,
                        help="tf.distribute strategy (multi_worker reads TF_CONFIG)")
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed_float16 on GPUs, mixed_bfloat16 on CPUs; --no-mixed-precision: "
                             "float32. Default: the preset's model.dtype (lrcn_2f: 'auto', mixed "
                             "bf16 on CPUs with native bf16, float32 elsewhere); --set model.dtype=... wins")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any setting, e.g. --set model.hidden_units=1000 (repeatable)")
    parser.add_argument("--quiet", action="store_true",
                        help="one line per checkpoint interval instead of a progress bar (the default "
                             "when the output is not a terminal)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's and Keras's own log lines and warnings")
    return parser.parse_args(argv)


def config_from_args(args) -> config_lib.ExperimentConfig:
    cfg = presets.get_preset(args.preset)
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.data_dir={os.path.abspath(args.data)!r}")
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.mixed_precision is not None:  # before --set, so that --set wins
        # --no-mixed-precision: float32, also over a preset's "auto"
        policy = devices.mixed_precision_policy() if args.mixed_precision else None
        overrides.insert(0, f"model.dtype={policy!r}")
    return config_lib.apply_overrides(cfg, overrides)


def list_presets() -> str:
    from vcaption import registry

    width = max(len(n) for n in presets.preset_names())
    lines = []
    for name in presets.preset_names():
        cfg = presets.get_preset(name)
        family = registry.TASKS[cfg.task].split(".")[1]
        lines.append(f"{name:<{width}}  {family:<10}  {presets.summary(name)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.verbose)
    if args.list_presets:
        print(list_presets())
        return 0
    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    try:
        caption_metrics.require_java_for_preset(cfg)  # before TensorFlow is even imported
    except caption_metrics.JavaNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from vcaption.runtime.task import run_preset

    output = args.output or os.path.join("runs", cfg.name)
    run_preset(cfg, output, strategy_name=args.strategy,
               verbose=logs.progress_verbosity(args.quiet, sys.stdout.isatty()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
