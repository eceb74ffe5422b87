"""Evaluate captioners (and score results files of every task) from the command line.

    python -m vcaption.evaluate --model runs/lrcn_2f[/model.keras] --data DIR [--split test] [--beam-size K]
    python -m vcaption.evaluate --results R.json --annotations captions_val2017.json
    python -m vcaption.evaluate --task {retrieval,alignment,vqa} ...   (that task's own options)

The first form prints BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and perplexity for the model and, in the
same table, for two baselines — a blind language model (the run's `blind.keras`, same decoder
trained without the image, when present) and nearest-neighbour caption retrieval — and writes
COCO-format results JSON, per-image scores and a caption grid PNG next to the model (or to
`--output`). The second form scores any COCO-format results file against COCO caption
annotations. `--task` hands the rest of the command line to another task's scorer, e.g.
`--task retrieval --scores S.npy` (R@K and median rank of a saved score matrix). The library
functions are in `vcaption.captioning.evaluation`.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--data", help="a beam_jobs.preprocess output directory")
    parser.add_argument("--split", default="test", help="split to caption")
    parser.add_argument("--beam-size", type=int, default=3, help="beam width (1: greedy)")
    parser.add_argument("--max-length", type=int, default=DecodeConfig.max_length,
                        help="longest caption, in tokens")
    parser.add_argument("--alpha", type=float, default=0.0, help="length normalisation of the beam search")
    parser.add_argument("--output", help="where results go (default: next to the model)")
    parser.add_argument("--results", help="a COCO-format results JSON to score")
    parser.add_argument("--annotations", help="COCO caption annotations to score --results against")
    parser.add_argument("--scenes", help="the shapes world's scenes.json: also print scene-grounding "
                                         "metrics (object precision/recall, CHAIR, binding, counts, "
                                         "relations, held-out-pair recall)")
    return parser


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
    decode = DecodeConfig(beam_size=args.beam_size, max_length=args.max_length, alpha=args.alpha)
    image_size = model.image_size or 64
    feature_dim = model.feature_dim if model.encoder_name == "features" else None
    rows, scores = evaluation.evaluate_systems(
        model, PreparedData(args.data).vocabulary(), args.data, args.split, decode, image_size, feature_dim,
        blind_model=registry.load_model(blind_path) if os.path.exists(blind_path) else None,
        neighbours=baselines.NearestNeighbourIndex(model.encoder, args.data, image_size, feature_dim),
        world=load_world(args.scenes), spice=True)
    evaluation.print_tables(rows, f"{args.split} split, beam {args.beam_size}: {model_path}")
    evaluation.write_split_files(RunDirectory(args.output or os.path.dirname(model_path) or "."), args.data,
                                 args.split, scores)
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
    if args.results and not args.annotations:
        parser.error("--results needs --annotations")
    if not args.results and not (args.model and args.data):
        parser.error("give --model and --data, or --results and --annotations")
    from vcaption.metrics.caption import JavaNotFound, require_java

    try:  # before loading anything: both forms end in pycocoevalcap
        require_java("python -m vcaption.evaluate")
    except JavaNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return score_results(args) if args.results else evaluate_model(args)


if __name__ == "__main__":
    sys.exit(main())
