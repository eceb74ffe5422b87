"""Evaluate captioners (and score results files of every task) from the command line.

    python -m vcaption.evaluate --model runs/lrcn_2f[/model.keras] --data DIR [--split test] [--beam-size K]
    python -m vcaption.evaluate --run runs/lrcn_2f [--split test]                 (data and world of the run)
    python -m vcaption.evaluate --run runs/lrcn_2f --decoding-sweep [--split test] [--num-images K]
    python -m vcaption.evaluate --results R.json --annotations captions_val2017.json
    python -m vcaption.evaluate --task {retrieval,alignment,vqa} ...   (that task's own options)

The first form prints BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and perplexity for the model and, in the
same table, for two baselines — a blind language model (the run's `blind.keras`, same decoder
trained without the image, when present) and nearest-neighbour caption retrieval — with their
caption diversity (copies of training captions, distinct captions, vocabulary), and writes
COCO-format results JSON, per-image scores and a caption grid PNG next to the model (or to
`--output`). `--run` takes the model, its data directory and (on the built-in world) its scenes
from a training run. `--decoding-sweep` instead scores beam widths and best-of-N sampling settings
(LRCN Table 6; `vcaption.captioning.decoding_sweep`). `--results` scores any COCO-format results
file against COCO caption annotations. `--task` hands the rest of the command line to another task's scorer, e.g.
`--task retrieval --scores S.npy` (R@K and median rank of a saved score matrix). The library
functions are in `vcaption.captioning.evaluation`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys

from vcaption import cli
from vcaption.config import DecodeConfig
from vcaption.runtime import logs

# Scorers of the other tasks: modules whose `main(argv)` takes the rest of the command line
# (`python -m vcaption.evaluate --task vqa --results R.json ...`).
TASK_EVALUATORS: dict[str, str] = {
    "retrieval": "vcaption.metrics.retrieval",
    "alignment": "vcaption.retrieval.alignment",
    "vqa": "vcaption.metrics.vqa",
}
TASKS = ["caption", *TASK_EVALUATORS]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m vcaption.evaluate", __doc__.split("\n")[0],
        epilog=f"--task {{{','.join(TASKS)}}} picks the task (default caption); "
               "`python -m vcaption.evaluate --task NAME --help` shows another task's options.")
    parser.add_argument("--task", default="caption", choices=TASKS, help="what to evaluate")
    parser.add_argument("--model", help="a captioner's .keras file, or its training run directory "
                                        "(model.keras, and blind.keras when present)")
    parser.add_argument("--run", help="a training run directory: its model, and the data directory and "
                                      "(built-in world) scenes its config.json names, unless given")
    parser.add_argument("--data", help="a beam_jobs.preprocess output directory")
    parser.add_argument("--split", default="test", help="split to caption")
    parser.add_argument("--beam-size", type=int, default=3, help="beam width (1: greedy)")
    parser.add_argument("--max-length", type=int, default=None,
                        help=f"longest caption, in tokens (default: the run's, else {DecodeConfig.max_length})")
    parser.add_argument("--alpha", type=float, default=0.0, help="length normalisation of the beam search")
    parser.add_argument("--output", help="where results go (default: next to the model)")
    parser.add_argument("--results", help="a COCO-format results JSON to score")
    parser.add_argument("--annotations", help="COCO caption annotations to score --results against")
    parser.add_argument("--scenes", help="the shapes world's scenes.json: also print scene-grounding "
                                         "metrics (object precision/recall, CHAIR, binding, counts, "
                                         "relations, held-out-pair recall)")
    sweep = parser.add_argument_group("decoding sweep (LRCN Table 6)")
    sweep.add_argument("--decoding-sweep", action="store_true",
                       help="score every beam width and best-of-N sampling setting below on --split")
    sweep.add_argument("--beam-widths", type=int, nargs="*", metavar="K",
                       help="beam widths (1: greedy; default: LRCN's 1 2 3 5 10)")
    sweep.add_argument("--sample-sizes", type=int, nargs="*", metavar="N",
                       help="best-of-N sampling: samples per image (default: LRCN's 1 10 25 100)")
    sweep.add_argument("--lrcn-temperatures", type=float, nargs="*", metavar="T",
                       help="LRCN's T, a factor on the logits, i.e. true temperature 1 / T "
                            "(default: LRCN's 1 1.5 2)")
    sweep.add_argument("--seed", type=int, default=0, help="sampling seed")
    sweep.add_argument("--num-images", type=int, metavar="K",
                       help="only the split's first K images (best-of-100 decodes 100 captions per image)")
    return parser


def resolve_run(args: argparse.Namespace) -> None:
    """Fills --model, --data, --scenes and --max-length that were not given from `--run`'s config.json."""
    import tensorflow as tf

    from vcaption.config import DataConfig
    from vcaption.runtime import builtin_data
    from vcaption.runtime.run_directory import RunDirectory

    if not tf.io.gfile.exists(os.path.join(args.run, "config.json")):
        raise SystemExit(f"error: --run {args.run}: no config.json there (not a training run directory)")
    run = RunDirectory(args.run)
    config = run.read_config()
    args.model = args.model or run.path
    args.data = args.data or config.get("data_dir")
    if args.max_length is None:
        args.max_length = config.get("decode", {}).get("max_length", DecodeConfig.max_length)
    known = {field.name for field in dataclasses.fields(DataConfig)}
    data_cfg = DataConfig(**{k: v for k, v in config.get("data", {}).items() if k in known})
    if not args.scenes and not data_cfg.data_dir and args.data:
        # Built-in world: the records directory sits in `shapes_root`, beside the world it came from.
        world = os.path.join(os.path.dirname(os.path.abspath(args.data)), "world" + builtin_data.world_variant(data_cfg))
        scenes = os.path.join(world, "scenes.json")
        args.scenes = scenes if os.path.exists(scenes) else None


def load_world(scenes_path: str | None):
    """(scenes, held-out pairs) of `--scenes`, or None without it."""
    if not scenes_path:
        return None
    from vcaption.metrics import grounding

    return grounding.load_scenes(scenes_path)


def model_paths(model: str) -> tuple[str, str]:
    """(the captioner's .keras file, the blind language model's path next to it) of `--model`."""
    if os.path.isdir(model):
        model = os.path.join(model, "model.keras")
    return model, os.path.join(os.path.dirname(model), "blind.keras")


def evaluate_model(args: argparse.Namespace) -> int:
    from vcaption import registry
    from vcaption.captioning import baselines, evaluation
    from vcaption.runtime.prepared_data import PreparedData
    from vcaption.runtime.run_directory import RunDirectory

    model_path, blind_path = model_paths(args.model)
    model = registry.load_model(model_path)
    image_size = model.image_size or 64
    feature_dim = model.feature_dim if model.encoder_name == "features" else None
    output = RunDirectory(args.output or os.path.dirname(model_path) or ".")
    if args.decoding_sweep:
        return sweep_decoding(args, model, model_path, image_size, feature_dim, output)
    decode = DecodeConfig(beam_size=args.beam_size, max_length=args.max_length, alpha=args.alpha)
    rows, scores = evaluation.evaluate_systems(
        model, PreparedData(args.data).vocabulary(), args.data, args.split, decode, image_size, feature_dim,
        blind_model=registry.load_model(blind_path) if os.path.exists(blind_path) else None,
        neighbours=baselines.NearestNeighbourIndex(model.encoder, args.data, image_size, feature_dim),
        world=load_world(args.scenes), spice=True)
    evaluation.print_tables(rows, f"{args.split} split, beam {args.beam_size}: {model_path}")
    evaluation.write_split_files(output, args.data, args.split, scores)
    return 0


def sweep_decoding(args: argparse.Namespace, model, model_path: str, image_size: int, feature_dim: int | None,
                   output) -> int:
    from vcaption.captioning import decoding_sweep, evaluation
    from vcaption.runtime.prepared_data import PreparedData

    given = (args.beam_widths, args.sample_sizes, args.lrcn_temperatures)
    defaults = (decoding_sweep.BEAM_WIDTHS, decoding_sweep.SAMPLE_SIZES, decoding_sweep.LRCN_TEMPERATURES)
    sweep = decoding_sweep.strategies(*(d if g is None else g for g, d in zip(given, defaults)))
    command = "python -m vcaption.evaluate " + " ".join(args.command)
    table = decoding_sweep.run_sweep(
        model, PreparedData(args.data).vocabulary(), args.data, args.split, sweep, output, args.max_length,
        image_size, feature_dim, world=load_world(args.scenes), command=command, seed=args.seed,
        max_images=args.num_images)
    evaluation.print_tables(table["strategies"], f"{args.split} split, decoding strategies: {model_path}")
    print(f"wrote {output.file(f'decoding_sweep_{args.split}.json')} and .md, results_{args.split}_<strategy>.json")
    return 0


def score_results(args: argparse.Namespace) -> int:
    from vcaption.captioning import evaluation
    from vcaption.metrics import caption as caption_metrics
    from vcaption.metrics import grounding

    references, candidates = caption_metrics.load_coco_results(args.results, args.annotations)
    scores = caption_metrics.score_captions(references, candidates, spice=True)
    world = load_world(args.scenes)
    if world is not None:
        scores["grounding"] = grounding.grounding_scores(candidates, *world)
    evaluation.print_tables({os.path.basename(args.results): scores},
                            f"{len(candidates)} images scored against {args.annotations}")
    print(json.dumps(scores, indent=1))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # --task (and --verbose) first: another task's scorer gets the rest of the command line.
    front = argparse.ArgumentParser(prog="python -m vcaption.evaluate", add_help=False, allow_abbrev=False)
    front.add_argument("--task", default="caption", choices=TASKS)
    cli.add_verbose(front)
    known, rest = front.parse_known_args(argv)
    logs.configure(known.verbose)
    if known.task != "caption":
        return importlib.import_module(TASK_EVALUATORS[known.task]).main(rest)
    parser = build_parser()
    args = parser.parse_args(rest)
    args.command = rest
    if args.run:
        resolve_run(args)
    if args.max_length is None:
        args.max_length = DecodeConfig.max_length
    if args.results and not args.annotations:
        parser.error("--results needs --annotations")
    if not args.results and not (args.model and args.data):
        parser.error("give --run (or --model and --data), or --results and --annotations")
    if args.decoding_sweep and args.results:
        parser.error("--decoding-sweep decodes with a model: give --run, or --model and --data")
    from vcaption.metrics.caption import JavaNotFound, require_java

    try:  # before loading anything: both forms end in pycocoevalcap
        require_java("python -m vcaption.evaluate")
    except JavaNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return score_results(args) if args.results else evaluate_model(args)


if __name__ == "__main__":
    sys.exit(main())
