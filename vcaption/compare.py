"""Train several presets and tabulate their test metrics (in the spirit of LRCN Table 6).

    python -m vcaption.compare [--presets lrcn_1u,lrcn_2u,lrcn_2f,lrcn_2f_rnn,karpathy_mrnn,mao_mrnn]
        [--runs runs/compare] [--output docs/captioning_table.md] [--set section.field=value ...]
    python -m vcaption.compare --task retrieval [--runs runs/compare_retrieval]
        [--output docs/retrieval_table.md] [--max-test-images N] [--set section.field=value ...]

`--task retrieval` is the one image-sentence retrieval table across families (region rankers,
whole-image embeddings, captioners by likelihood): `vcaption.retrieval.comparison`.

Each preset trains with `vcaption.train` into `<runs>/<preset>` (a finished run is resumed, i.e. only
re-evaluated, so the command can be re-run after an interruption), then the table — rows = presets,
columns = BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, perplexity, with the blind baseline of the default
preset as a last row — is written as Markdown with the exact command that made it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from vcaption import cli
from vcaption.runtime import logs

DEFAULT_PRESETS = ("lrcn_1u", "lrcn_2u", "lrcn_2f", "lrcn_2f_rnn", "karpathy_mrnn", "mao_mrnn")
COLUMNS = (("Bleu_1", "B1"), ("Bleu_2", "B2"), ("Bleu_3", "B3"), ("Bleu_4", "B4"), ("METEOR", "METEOR"),
           ("ROUGE_L", "ROUGE-L"), ("CIDEr", "CIDEr-D"), ("perplexity", "perplexity"))


def markdown_table(rows: dict[str, dict], command: str, notes: str = "") -> str:
    header = "| model | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, metrics in rows.items():
        cells = [f"{metrics[key]:.3f}" if key in metrics else "–" for key, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join([
        "# Captioning models on the built-in shapes world",
        "",
        "Test split, beam search with width 3; CIDEr-D is pycocoevalcap's `CIDEr`; perplexity is per",
        "reference token (`<end>` included) under teacher forcing. Made by:",
        "",
        "```bash",
        command,
        "```",
        "",
        *lines,
        "",
        notes,
    ])


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("python -m vcaption.compare", __doc__.split("\n")[0])
    parser.add_argument("--task", choices=("caption", "retrieval"), default="caption",
                        help="caption: the captioning table (default); retrieval: the retrieval table "
                             "across families")
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                        help="comma-separated presets, one row each (--task caption)")
    parser.add_argument("--runs", default=None, help="directory of the runs (<runs>/<preset>); default "
                                                     "runs/compare, or runs/compare_retrieval (which "
                                                     "also gets the score matrices and retrieval.json)")
    parser.add_argument("--output", default=None,
                        help="the Markdown table; default docs/captioning_table.md (with its .json "
                             "next to it), or docs/retrieval_table.md")
    parser.add_argument("--max-test-images", type=int, default=None,
                        help="--task retrieval: score the first N test images (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="override a config field of every preset; repeatable")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.verbose)
    if args.task == "retrieval":
        return compare_retrieval(args)
    args.runs = args.runs or "runs/compare"
    args.output = args.output or "docs/captioning_table.md"

    from vcaption import config as config_lib
    from vcaption import presets as presets_lib
    from vcaption.runtime.task import run_preset

    presets = [p for p in args.presets.split(",") if p]

    rows, blind, started = {}, None, datetime.datetime.now()
    for index, name in enumerate(presets):
        cfg = config_lib.apply_overrides(presets_lib.get_preset(name), args.overrides)
        if index > 0:  # one blind baseline (of the first preset) is enough for the table
            cfg = config_lib.apply_overrides(cfg, ["train.baselines=False"])
        print(f"=== {name} ({index + 1}/{len(presets)})", flush=True)
        result = run_preset(cfg, os.path.join(args.runs, name), verbose=2)
        rows[name] = result["model"]
        blind = blind or result["baselines"].get("blind")
    if blind:
        rows[f"blind LM ({presets[0]} decoder, no image)"] = blind
    command = "python -m vcaption.compare " + " ".join(
        ([f"--presets {args.presets}"] if args.presets != ",".join(DEFAULT_PRESETS) else [])
        + [f"--set {o}" for o in args.overrides])
    minutes = (datetime.datetime.now() - started).total_seconds() / 60
    notes = f"Wall time for all runs on a 2-core CPU: {minutes:.0f} minutes. Raw metrics: `{args.runs}/*/metrics.json`."
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        f.write(markdown_table(rows, command.strip(), notes) + "\n")
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    print(open(args.output).read())
    return 0


def compare_retrieval(args) -> int:
    from vcaption.retrieval import comparison

    if args.presets != ",".join(DEFAULT_PRESETS):
        print("compare --task retrieval: its systems are fixed (vcaption.retrieval.comparison.SYSTEMS); "
              "--presets ignored")
    runs = args.runs or "runs/compare_retrieval"
    output = args.output or "docs/retrieval_table.md"
    command = " ".join(["python -m vcaption.compare --task retrieval"]
                       + ([f"--runs {args.runs}"] if args.runs else [])
                       + ([f"--output {args.output}"] if args.output else [])
                       + ([f"--max-test-images {args.max_test_images}"] if args.max_test_images else [])
                       + [f"--set {o}" for o in args.overrides])
    comparison.run(runs, output, args.overrides, args.max_test_images, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
