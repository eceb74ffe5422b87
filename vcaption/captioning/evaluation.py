"""Evaluate captioners: generate with the in-graph decoders, score with pycocoevalcap.

    python -m vcaption.captioning.evaluation --model runs/lrcn_2f/model.keras --data DIR --split test [--beam-size K]
    python -m vcaption.captioning.evaluation --results R.json --annotations captions_val2017.json

The first form prints BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and perplexity for the model and, in the
same table, for two baselines — a blind language model (the run's `blind.keras`, same decoder
trained without the image, when present) and nearest-neighbour caption retrieval — and writes
COCO-format results JSON, per-image scores and a caption grid PNG next to the model. The second form
scores any COCO-format results file against COCO caption annotations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Mapping

import tensorflow as tf

from vcaption import data, decoding, text
from vcaption.config import DecodeConfig
from vcaption.metrics import caption as caption_metrics


def make_generator(model, decode: DecodeConfig, n_best: int = 1):
    """A traced function visual[B, ...] -> DecodeResult, using the model's step API."""

    @tf.function(reduce_retracing=True)
    def generate(visual):
        state = model.initial_state(model.encode_visual(visual))
        if decode.beam_size <= 1:
            return decoding.greedy(model.step, state, decode.max_length)
        return decoding.beam_search(model.step, state, model.vocab_size, decode.beam_size,
                                    decode.max_length, n_best=n_best, alpha=decode.alpha)

    return generate


def generate_captions(generate, vocab: text.Vocabulary, dataset: tf.data.Dataset
                      ) -> tuple[dict[str, str], dict[str, list[str]], dict[str, float]]:
    """(image id -> caption, image id -> references, image id -> log-probability) for a
    `caption_eval` dataset, with `generate` from `make_generator` (build it once and reuse it:
    each new one is traced again)."""
    candidates, references, scores = {}, {}, {}
    for batch in dataset:
        result = generate(batch["visual"])
        captions = vocab.decode(result.ids[:, 0]).numpy()  # best of the N-best
        for image_id, caption, refs, score in zip(batch["image_id"].numpy(), captions,
                                                  batch["references"].to_list(), result.log_probs[:, 0].numpy()):
            key = image_id.decode()
            candidates[key] = caption.decode()
            references[key] = [r.decode() for r in refs]
            scores[key] = float(score)
    return candidates, references, scores


def teacher_forced_nll(model):
    """A traced function (inputs, targets) -> (summed negative log-likelihood, tokens) of a batch
    of a `caption` dataset; build it once and reuse it (each new one is traced again)."""

    @tf.function(reduce_retracing=True)
    def nll(inputs, targets):
        logits = model(inputs, training=False)  # [batch, time, V]
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        mask = tf.cast(targets != text.PAD_ID, tf.float32)
        return tf.reduce_sum(losses * mask), tf.reduce_sum(mask)

    return nll


def teacher_forced_perplexity(model, dataset: tf.data.Dataset, nll=None) -> float:
    """exp(mean negative log-likelihood of every reference token, <end> included) on a
    `caption` dataset (training=False); `nll` from `teacher_forced_nll(model)`, or a new one."""
    nll = nll or teacher_forced_nll(model)
    total, tokens = 0.0, 0.0
    for inputs, targets in dataset:
        batch_nll, batch_tokens = nll(inputs, targets)
        total += float(batch_nll)
        tokens += float(batch_tokens)
    return caption_metrics.perplexity(total, int(tokens))


def eval_datasets(data_dir: str, split: str, image_size: int, feature_dim: int | None, batch_size: int = 64,
                  blind: bool = False):
    """(generation, teacher-forced) datasets of a split; `blind`: no image decoded (`data.make_dataset`)."""
    common = dict(batch_size=batch_size, image_size=image_size, feature_dim=feature_dim, blind=blind)
    generation = data.make_dataset(data_dir, split, "caption_eval", **common)
    teacher_forced = data.make_dataset(data_dir, split, "caption", training=False, **common)
    return generation, teacher_forced


def evaluate_captioner(model, vocab: text.Vocabulary, data_dir: str, split: str, decode: DecodeConfig,
                       image_size: int = 64, feature_dim: int | None = None, blind: bool = False,
                       spice: bool = False) -> dict:
    """Metrics (pycocoevalcap keys + "perplexity"), with "candidates", "references", "per_image"."""
    generation, teacher_forced = eval_datasets(data_dir, split, image_size, feature_dim, blind=blind)
    candidates, references, _ = generate_captions(make_generator(model, decode), vocab, generation)
    scores = caption_metrics.score_captions(references, candidates, spice=spice, per_image=True)
    scores["perplexity"] = teacher_forced_perplexity(model, teacher_forced)
    scores["candidates"], scores["references"] = candidates, references
    return scores


def format_table(rows: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    """A fixed-width table: one row per system, one column per metric (CIDEr-D = pycocoevalcap CIDEr)."""
    columns = [*caption_metrics.CAPTION_METRICS, "perplexity"]
    header = f"{'system':<24}" + "".join(f"{('CIDEr-D' if c == 'CIDEr' else c):>11}" for c in columns)
    lines = [title, header, "-" * len(header)] if title else [header, "-" * len(header)]
    for name, metrics in rows.items():
        cells = "".join(f"{metrics[c]:>11.3f}" if isinstance(metrics.get(c), float) and
                        math.isfinite(metrics[c]) else f"{'-':>11}" for c in columns)
        lines.append(f"{name:<24}{cells}")
    return "\n".join(lines)


def public_metrics(scores: Mapping) -> dict:
    """The numeric metrics of `evaluate_captioner` (no candidates / per-image detail)."""
    return {k: v for k, v in scores.items() if isinstance(v, float)}


def write_results(path: str, candidates: Mapping[str, str]) -> None:
    """COCO-format results: [{"image_id": int or str, "caption": str}]."""
    results = [{"image_id": int(k) if k.isdigit() else k, "caption": v} for k, v in sorted(candidates.items())]
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def _evaluate_model_cli(args) -> int:
    import keras

    from vcaption import visualize
    from vcaption.captioning import baselines
    from vcaption.captioning import lrcn, mrnn  # noqa: F401  (registers the classes for loading)

    model = keras.saving.load_model(args.model, compile=False)
    vocab = text.Vocabulary(os.path.join(args.data, "vocab.txt"))
    decode = DecodeConfig(beam_size=args.beam_size, max_length=args.max_length, alpha=args.alpha)
    image_size, feature_dim = model.image_size or 64, model.feature_dim if model.encoder_name == "features" else None
    scores = evaluate_captioner(model, vocab, args.data, args.split, decode, image_size, feature_dim,
                                spice=True)
    rows = {"model": public_metrics(scores)}
    blind_path = os.path.join(os.path.dirname(args.model), "blind.keras")
    if os.path.exists(blind_path):
        blind_model = keras.saving.load_model(blind_path, compile=False)
        rows["blind LM"] = public_metrics(evaluate_captioner(
            blind_model, vocab, args.data, args.split, decode, image_size, feature_dim, blind=True))
    nn = baselines.nearest_neighbour_baseline(model, args.data, args.split, image_size, feature_dim)
    rows["nearest neighbour"] = nn
    print(format_table(rows, f"{args.split} split, beam {args.beam_size}: {args.model}"))
    out_dir = args.output or os.path.dirname(args.model) or "."
    os.makedirs(out_dir, exist_ok=True)
    write_results(os.path.join(out_dir, f"results_{args.split}.json"), scores["candidates"])
    with open(os.path.join(out_dir, f"per_image_{args.split}.json"), "w") as f:
        json.dump(scores["per_image"], f, indent=1)
    visualize.caption_grid_from_records(args.data, args.split, scores["candidates"],
                                        os.path.join(out_dir, f"caption_grid_{args.split}.png"))
    return 0


def _score_results_cli(args) -> int:
    references, candidates = caption_metrics.load_coco_results(args.results, args.annotations)
    scores = caption_metrics.score_captions(references, candidates, spice=True)
    print(format_table({os.path.basename(args.results): scores},
                       f"{len(candidates)} images scored against {args.annotations}"))
    print(json.dumps(scores, indent=1))
    return 0


# Scorers of the other tasks: modules whose `main(argv)` takes the rest of the command line
# (`python -m vcaption.captioning.evaluation --task vqa --results R.json ...`).
TASK_EVALUATORS: dict[str, str] = {
    "retrieval": "vcaption.metrics.retrieval",
    "alignment": "vcaption.retrieval.alignment",
    "vqa": "vcaption.metrics.vqa",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    task_parser = argparse.ArgumentParser(add_help=False)
    task_parser.add_argument("--task", default="caption", choices=["caption", *TASK_EVALUATORS])
    task, rest = task_parser.parse_known_args(argv)
    if task.task != "caption":
        import importlib

        return importlib.import_module(TASK_EVALUATORS[task.task]).main(rest)
    parser = argparse.ArgumentParser(prog="python -m vcaption.captioning.evaluation", description=__doc__.split("\n")[0],
                                     epilog=f"--task {{{','.join(['caption', *TASK_EVALUATORS])}}} "
                                            "picks the task (default caption)")
    parser.add_argument("--model", help="a captioner .keras file")
    parser.add_argument("--data", help="a beam_jobs.preprocess output directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=DecodeConfig.max_length)
    parser.add_argument("--alpha", type=float, default=0.0)
    parser.add_argument("--output", help="where results go (default: next to the model)")
    parser.add_argument("--results", help="a COCO-format results JSON to score")
    parser.add_argument("--annotations", help="COCO caption annotations to score --results against")
    args = parser.parse_args(rest)
    if args.results:
        if not args.annotations:
            parser.error("--results needs --annotations")
        return _score_results_cli(args)
    if not (args.model and args.data):
        parser.error("give --model and --data, or --results and --annotations")
    return _evaluate_model_cli(args)


if __name__ == "__main__":
    sys.exit(main())
