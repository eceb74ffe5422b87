"""Evaluate captioners: generate with the in-graph decoders, score with pycocoevalcap.

Library functions: `make_generator`, `make_sampler`, `generate_captions`, teacher-forced perplexity,
`evaluate_captioner` (metrics of a captioner on a split), `evaluate_systems` (a captioner and its
baselines, with caption diversity, and scene grounding on the built-in world), `format_table`,
`print_tables`, `write_results`, `write_split_files`. The command line is `python -m vcaption.evaluate`.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Mapping

import tensorflow as tf

from vcaption import data, decoding, text
from vcaption.config import DecodeConfig
from vcaption.metrics import caption as caption_metrics
from vcaption.metrics import diversity, grounding
from vcaption.runtime import profile


def make_generator(model, decode: DecodeConfig, n_best: int = 1):
    """A traced function (visual[B, ...], batch index = None) -> DecodeResult, using the model's
    step API; deterministic decoders ignore the batch index (`make_sampler` seeds with it)."""

    @tf.function(reduce_retracing=True)
    def generate(visual, batch_index=None):
        del batch_index
        state = model.initial_state(model.encode_visual(visual))
        if decode.beam_size <= 1:
            return decoding.greedy(model.step, state, decode.max_length)
        return decoding.beam_search(model.step, state, model.vocab_size, decode.beam_size,
                                    decode.max_length, n_best=n_best, alpha=decode.alpha)

    return generate


def make_sampler(model, max_length: int, num_samples: int, temperature: float, seed: int = 0):
    """A traced function (visual[B, ...], batch index) -> DecodeResult: best-of-N sampling
    (`decoding.sample`, true temperature) keeping the most likely of `num_samples` draws.

    Each batch draws with its own stateless seed (seed, batch index), so the batches of a split are
    not fed the same random stream and a run is reproducible."""

    @tf.function(reduce_retracing=True)
    def generate(visual, batch_index):
        state = model.initial_state(model.encode_visual(visual))
        return decoding.sample(model.step, state, max_length, num_samples, temperature=temperature,
                               seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(batch_index, tf.int64)]))

    return generate


def generate_captions(generate, vocab: text.Vocabulary, dataset: tf.data.Dataset
                      ) -> tuple[dict[str, str], dict[str, list[str]], dict[str, float]]:
    """(image id -> caption, image id -> references, image id -> log-probability) for a
    `caption_eval` dataset, with `generate` from `make_generator` (build it once and reuse it:
    each new one is traced again)."""
    candidates, references, scores = {}, {}, {}
    for index, batch in enumerate(dataset):
        result = generate(batch["visual"], tf.constant(index, tf.int64))
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
    with profile.phase("decode"):
        candidates, references, _ = generate_captions(make_generator(model, decode), vocab, generation)
    with profile.phase("score"):
        scores = caption_metrics.score_captions(references, candidates, spice=spice, per_image=True)
    with profile.phase("perplexity"):
        scores["perplexity"] = teacher_forced_perplexity(model, teacher_forced)
    scores["candidates"], scores["references"] = candidates, references
    return scores


def _format_rows(rows: Mapping[str, Mapping], columns: Mapping[str, str], cell, title: str) -> str:
    """A fixed-width table: one row per system, one column per metric key (`columns`: key ->
    header); `cell(value)` is the 11-character text of a value, or None for "-"."""
    header = f"{'system':<24}" + "".join(f"{label:>11}" for label in columns.values())
    lines = [title, header, "-" * len(header)] if title else [header, "-" * len(header)]
    for name, metrics in rows.items():
        cells = "".join(cell(metrics.get(key)) or f"{'-':>11}" for key in columns)
        lines.append(f"{name:<24}{cells}")
    return "\n".join(lines)


def format_table(rows: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    """The caption metrics of each system (CIDEr-D = pycocoevalcap CIDEr) and perplexity."""
    columns = {c: "CIDEr-D" if c == "CIDEr" else c for c in (*caption_metrics.CAPTION_METRICS, "perplexity")}
    return _format_rows(rows, columns, lambda v: f"{v:>11.3f}" if isinstance(v, float) and math.isfinite(v)
                        else None, title)


GROUNDING_COLUMNS = {"object_precision": "obj P", "object_recall": "obj R", "chair_s": "CHAIR_s",
                     "chair_i": "CHAIR_i", "binding_accuracy": "binding", "count_accuracy": "counts",
                     "relation_accuracy": "relations", "held_out_pair_recall": "held-out R"}


def format_grounding_table(rows: Mapping[str, Mapping], title: str = "") -> str:
    """The scene-grounding metrics (`vcaption.metrics.grounding`) of each system, in percent."""
    return _format_rows(rows, GROUNDING_COLUMNS, lambda v: None if v is None else f"{100 * v:>11.1f}", title)


SCENE_SIZE_COLUMNS = {"captions": "images", "CIDEr": "CIDEr-D", "object_recall": "obj R",
                      "chair_s": "CHAIR_s", "binding_accuracy": "binding", "held_out_pair_recall": "held-out R"}


def format_scene_size_table(rows: Mapping[str, Mapping[str, Mapping]], title: str = "") -> str:
    """`scores_by_scene_size` of each system, one row per (system, objects in the scene): image
    count, CIDEr-D, grounding rates in percent."""

    def text(key, value):
        if value is None:
            return None
        if isinstance(value, int):
            return str(value)
        return f"{value:.3f}" if key == "CIDEr" else f"{100 * value:.1f}"

    flat = {f"{system}, {size} obj": {key: text(key, group.get(key)) for key in SCENE_SIZE_COLUMNS}
            for system, groups in rows.items() for size, group in groups.items()}
    return _format_rows(flat, SCENE_SIZE_COLUMNS, lambda v: None if v is None else f"{v:>11}", title)


DIVERSITY_COLUMNS = {"copied_from_training": "copied %", "distinct_captions": "distinct %",
                     "vocabulary_used": "vocab", "reference_vocabulary": "human voc",
                     "vocabulary_coverage": "coverage %", "distinct_1": "distinct-1", "distinct_2": "distinct-2"}


def format_diversity_table(rows: Mapping[str, Mapping], title: str = "") -> str:
    """The caption-diversity statistics (`vcaption.metrics.diversity`) of each system: shares in
    percent, vocabulary sizes in words."""
    return _format_rows(rows, DIVERSITY_COLUMNS, lambda v: None if v is None else
                        f"{v:>11d}" if isinstance(v, int) else f"{100 * v:>11.1f}", title)


@functools.lru_cache(maxsize=4)
def training_references(data_dir: str) -> tuple[tuple[str, ...], ...]:
    """The references of every training image of a preprocessing output, normalized
    (`text.normalize`). Read once per process: the copy rate of every evaluation and the
    self-critical reward's corpus (`self_critical.CiderD`) share it."""
    dataset = data.make_dataset(data_dir, "train", "caption_eval", batch_size=512, blind=True)
    references = [[r.decode() for r in refs] for batch in dataset for refs in batch["references"].to_list()]
    return tuple(tuple(refs) for refs in text.normalized_caption_lists(references))


@functools.lru_cache(maxsize=4)
def training_captions(data_dir: str) -> frozenset[str]:
    """Every training caption of a preprocessing output, normalized: what a generated caption is
    copied from (`training_references`, flattened)."""
    return frozenset(caption for refs in training_references(data_dir) for caption in refs)


def caption_diversity(candidates: Mapping[str, str], references: Mapping[str, list[str]],
                      training: frozenset[str]) -> dict:
    """`diversity.diversity_scores` of generated captions against their images' references and the
    training captions, all normalized one way (a decoded <unk> becomes "unk", as it would in a reference)."""
    ids = sorted(candidates)
    generated = dict(zip(ids, text.normalized_captions([candidates[i] for i in ids])))
    human = dict(zip(ids, text.normalized_caption_lists([references[i] for i in ids])))
    return diversity.diversity_scores(generated, human, training)


def evaluate_systems(model, vocab: text.Vocabulary, data_dir: str, split: str, decode: DecodeConfig,
                     image_size: int, feature_dim: int | None, *, blind_model=None, neighbours=None,
                     world: tuple[dict, list] | None = None, name: str = "model",
                     spice: bool = False) -> tuple[dict, dict]:
    """A captioner and its baselines on one split, as `python -m vcaption.train` and
    `python -m vcaption.evaluate` report them.

    Args:
        model: the captioner (row `name`).
        blind_model: its blind language model (row "blind LM"), if any.
        neighbours: a `baselines.NearestNeighbourIndex` (row "nearest neighbour"), if any.
        world: (scenes, held-out pairs) of `grounding.load_scenes`: every row also gets a
            "grounding" block.
        spice: also SPICE, for the captioner's row.

    Returns:
        (rows: system -> numeric metrics and a "diversity" block (`caption_diversity`: copies of
        training captions, distinct captions, vocabulary), the captioner's `evaluate_captioner` result with its
        candidates and per-image scores).
    """
    with profile.phase(split):
        with profile.phase(name):
            scores = evaluate_captioner(model, vocab, data_dir, split, decode, image_size, feature_dim,
                                        spice=spice)
        systems = {name: scores}
        if blind_model is not None:
            with profile.phase("blind LM"):
                systems["blind LM"] = evaluate_captioner(blind_model, vocab, data_dir, split, decode,
                                                         image_size, feature_dim, blind=True)
        if neighbours is not None:
            with profile.phase("nearest neighbour"):
                systems["nearest neighbour"] = neighbours.evaluate(split)
        rows = {system: public_metrics(s) for system, s in systems.items()}
        with profile.phase("diversity and grounding"):
            training = training_captions(data_dir)
            for system, s in systems.items():
                rows[system]["diversity"] = caption_diversity(s["candidates"], scores["references"], training)
            if world is not None:
                scenes, held_out = world
                for system, s in systems.items():
                    rows[system]["grounding"] = grounding.grounding_scores(s["candidates"], scenes, held_out)
                    rows[system]["by_scene_size"] = scores_by_scene_size(s, scenes, held_out)
    return rows, scores


def scores_by_scene_size(scores: Mapping, scenes: Mapping[str, Mapping], held_out) -> dict[str, dict]:
    """`grounding.grounding_by_scene_size` of a system's candidates, each group with the mean of its
    images' per-image CIDEr-D ("CIDEr", when `scores` has "per_image"): the IDF stays the whole
    split's, so the groups' means average, weighted by their images, to the split's CIDEr-D."""
    groups = grounding.grounding_by_scene_size(scores["candidates"], scenes, held_out)
    per_image = scores.get("per_image")
    if per_image:
        totals: dict[str, list[float]] = {}
        for image_id, image_scores in per_image.items():
            size = str(len(scenes[str(image_id)]["objects"]))
            totals.setdefault(size, []).append(image_scores["CIDEr"])
        for size, values in totals.items():
            groups[size]["CIDEr"] = sum(values) / len(values)
    return groups


def print_tables(rows: Mapping[str, Mapping], title: str) -> None:
    """The caption-metrics table and, when the rows have them, the grounding, diversity and
    by-scene-size tables."""
    print(format_table(rows, title))
    for block, formatter, label in (("grounding", format_grounding_table, "scene grounding"),
                                    ("diversity", format_diversity_table, "caption diversity"),
                                    ("by_scene_size", format_scene_size_table, "by objects in the scene")):
        blocks = {system: r[block] for system, r in rows.items() if block in r}
        if blocks:
            print(formatter(blocks, f"{title}: {label}"))


def write_split_files(run, data_dir: str, split: str, scores: Mapping) -> None:
    """`results_<split>.json` (COCO results), `per_image_<split>.json` and
    `caption_grid_<split>.png` of a captioner's `evaluate_captioner` result, into a `RunDirectory`."""
    from vcaption import visualize  # late: matplotlib is slow to import and only this needs it

    write_results(run.file(f"results_{split}.json"), scores["candidates"])
    run.write_json(f"per_image_{split}.json", scores["per_image"])
    visualize.caption_grid_from_records(data_dir, split, scores["candidates"], run.file(f"caption_grid_{split}.png"))


def public_metrics(scores: Mapping) -> dict:
    """The numeric metrics of `evaluate_captioner` (no candidates / per-image detail)."""
    return {k: v for k, v in scores.items() if isinstance(v, float)}


def write_results(path: str, candidates: Mapping[str, str]) -> None:
    """COCO-format results: [{"image_id": int or str, "caption": str}]."""
    results = [{"image_id": int(k) if k.isdigit() else k, "caption": v} for k, v in sorted(candidates.items())]
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
