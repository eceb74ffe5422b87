"""Trainer of the region-embedding ranker (task "retrieval"): `python -m vcaption.train --preset karpathy_ranker`.

Builds (once) the built-in shapes world preprocessed from its COCO files, whose instance boxes
become the regions of every caption record; trains `RegionRanker` with the max-margin loss of
Eq. 9; keeps the checkpoint interval with the best validation R@1 + R@5 + R@10 (annotation +
search); then on the test split writes

- `scores_test.npy` (rows images, columns sentences, sentence j of image j // 5) and
  `texts_test.json` (the normalized sentences in column order), which
  `python -m vcaption.captioning.evaluation --task retrieval --scores ... --texts ...` re-scores;
- `metrics.json`: the retrieval table per protocol beside the upper bound that duplicate
  sentences allow, the alignment accuracy (β chosen on val) and the training time;
- `alignments_test.json` (Visual Genome region format), `alignment_test.png` (Fig. 5 style).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from vcaption import text
from vcaption.retrieval import data as ranker_data
from vcaption.config import ExperimentConfig
from vcaption.metrics import retrieval

SENTENCES_PER_IMAGE = retrieval.SENTENCES_PER_IMAGE


def prepare_region_data(cfg) -> str:
    """The built-in world preprocessed from its COCO files (captions + instance boxes), once."""
    from vcaption.train import prepare_builtin_data

    return prepare_builtin_data(cfg, "coco")


# ---------------------------------------------------------------------------------------------
# Embedding a split and scoring it
# ---------------------------------------------------------------------------------------------
def embed_split(model, data_dir: str, split: str, max_regions: int, batch_size: int = 100,
                limit: int | None = None) -> dict:
    """Region and word embeddings of every image of a split with >= 5 sentences (first 5 kept).

    Returns:
        {"image_ids": [N], "regions": float32 [N, R, h], "boxes": [N, R, 4], "images": uint8
         [N, S, S, 3], "word_ids": int32 [5N, T], "words": float32 [5N, T, h], "texts": [5N]
         normalized sentences, "skipped": image ids with fewer than 5 sentences}.
    """
    embed_regions = tf.function(model.embed_regions, reduce_retracing=True)
    embed_words = tf.function(model.embed_words, reduce_retracing=True)
    out = {"image_ids": [], "regions": [], "boxes": [], "images": [], "word_ids": [], "texts": [],
           "skipped": []}
    count = 0
    for batch in ranker_data.eval_dataset(data_dir, split, batch_size, model.image_size, max_regions):
        sentences = batch["words"].row_lengths().numpy()
        keep = np.flatnonzero(sentences >= SENTENCES_PER_IMAGE)
        ids = [i.decode() for i in batch["image_id"].numpy()]
        out["skipped"] += [ids[i] for i in np.flatnonzero(sentences < SENTENCES_PER_IMAGE)]
        if limit is not None:
            keep = keep[:max(0, limit - count)]
        if not len(keep):
            continue
        count += len(keep)
        out["image_ids"] += [ids[i] for i in keep]
        out["regions"].append(embed_regions(tf.gather(batch["image"], keep),
                                            tf.gather(batch["boxes"], keep)).numpy())
        out["boxes"].append(tf.gather(batch["boxes"], keep).numpy())
        out["images"].append(tf.gather(batch["image"], keep).numpy())
        words = batch["words"].to_list()
        captions = batch["captions"].to_list()
        for i in keep:
            out["word_ids"] += words[i][:SENTENCES_PER_IMAGE]
            out["texts"] += [c.decode() for c in captions[i][:SENTENCES_PER_IMAGE]]
        if limit is not None and count >= limit:
            break
    if not out["image_ids"]:
        raise ValueError(f"{data_dir} split {split!r}: no image with {SENTENCES_PER_IMAGE} sentences")
    for key in ("regions", "boxes", "images"):
        out[key] = np.concatenate(out[key])
    length = max(len(w) for w in out["word_ids"])
    padded = np.zeros((len(out["word_ids"]), length), np.int32)  # [5N, T]
    for row, ids in enumerate(out["word_ids"]):
        padded[row, :len(ids)] = ids
    out["word_ids"] = padded
    out["words"] = np.concatenate([embed_words(tf.constant(padded[i:i + 500])).numpy()
                                   for i in range(0, len(padded), 500)])
    out["texts"] = [t.decode("utf-8") for t in text.normalize(tf.constant(out["texts"])).numpy()]
    return out


def score_matrix(model, embedded: dict, chunk: int = 500) -> np.ndarray:
    """S [N, 5N] (Eq. 8) for an `embed_split` result, sentences in chunks to bound memory."""
    regions = tf.constant(embedded["regions"])
    columns = []
    for start in range(0, len(embedded["word_ids"]), chunk):
        columns.append(model.score(regions, tf.constant(embedded["words"][start:start + chunk]),
                                   tf.constant(embedded["word_ids"][start:start + chunk])).numpy())
    return np.concatenate(columns, axis=1)


def _recall_sum(result: dict) -> float:
    return sum(result[side][f"R@{k}"] for side in ("annotation", "search") for k in retrieval.RECALL_AT)


def _validation_callback(model, data_dir, max_regions, limit, best_path):
    import keras

    class ValidationRecall(keras.callbacks.Callback):
        """Val R@1+5+10 (annotation + search, 1K) after every interval; keeps the best weights."""

        def __init__(self):
            super().__init__()
            self.best = -math.inf
            if os.path.exists(best_path + ".json"):
                with open(best_path + ".json") as f:
                    self.best = json.load(f)["val_recall_sum"]

        def on_epoch_end(self, epoch, logs=None):
            embedded = embed_split(model, data_dir, "val", max_regions, limit=limit)
            result = retrieval.evaluate_retrieval(score_matrix(model, embedded), "1K")
            total = _recall_sum(result)
            if logs is not None:
                logs["val_recall_sum"] = total
                logs["val_annotation_R@1"] = result["annotation"]["R@1"]
                logs["val_search_R@1"] = result["search"]["R@1"]
            if total > self.best:
                self.best = total
                model.save_weights(best_path)
                with open(best_path + ".json", "w") as f:
                    json.dump({"val_recall_sum": total, "interval": epoch + 1}, f)

    return ValidationRecall()


def fit(model, cfg: ExperimentConfig, data_dir: str, output: str, stats: dict, verbose: int = 1) -> dict:
    """Trains with Eq. 9 (resumable); returns {"steps", "seconds", "best_val_recall_sum"}."""
    from vcaption.train import checkpoint_intervals, make_optimizer, optimizer_steps, resumable_callbacks

    tcfg, targs = cfg.train, cfg.task_args
    max_regions = int(targs.get("max_regions", ranker_data.DEFAULT_MAX_REGIONS))
    steps_per_epoch = max(1, stats["examples"]["train"] // tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs
    intervals, interval = checkpoint_intervals(total_steps, tcfg.checkpoint_every)
    train = ranker_data.training_dataset(data_dir, "train", tcfg.batch_size, model.image_size,
                                         max_regions, seed=tcfg.seed)
    model.compile(optimizer=make_optimizer(tcfg, total_steps))
    best_path = os.path.join(output, "best.weights.h5")
    callbacks = resumable_callbacks(output, "", [
        _validation_callback(model, data_dir, max_regions, targs.get("val_images", 1000), best_path)])
    print(f"{cfg.name}: {tcfg.epochs} epochs of {steps_per_epoch} steps (batch {tcfg.batch_size} "
          f"images) = {intervals} checkpoint intervals of {interval} steps")
    start = time.perf_counter()
    model.fit(train, epochs=intervals, steps_per_epoch=interval, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start
    steps = optimizer_steps(model)
    best = None
    if os.path.exists(best_path):
        model.load_weights(best_path)
        with open(best_path + ".json") as f:
            best = json.load(f)["val_recall_sum"]
    return {"steps": steps, "seconds": round(seconds, 1), "best_val_recall_sum": best}


def retrieval_report(scores: np.ndarray, texts) -> dict:
    """{protocol: {"model": ..., "upper bound (duplicates)": ...}} for every available protocol."""
    report = {}
    for protocol in retrieval.available_protocols(scores.shape[0]):
        report[protocol] = {"model": retrieval.evaluate_retrieval(scores, protocol),
                            "upper bound (duplicates)": retrieval.duplicate_upper_bound(texts, protocol)}
    return report


def run(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Trains the ranker, evaluates retrieval (and alignment) on test, writes `<output>/metrics.json`.

    `task_args`: `max_regions` (R, whole image included), `val_images` (images scored for model
    selection and β), `scenes` (scenes.json ground truth for alignment accuracy; found by itself
    for the built-in world).
    """
    import keras

    from vcaption.retrieval.ranker import RegionRanker
    from vcaption.train import distribution_strategy, is_chief, read_stats, worker_output

    strategy = distribution_strategy(strategy_name)
    keras.utils.set_random_seed(cfg.train.seed)
    output = worker_output(output)
    os.makedirs(output, exist_ok=True)
    data_dir = cfg.data.data_dir or prepare_region_data(cfg.data)
    stats = read_stats(data_dir)
    vocab = text.Vocabulary(os.path.join(data_dir, "vocab.txt"))
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(cfg.to_dict() | {"data_dir": data_dir}, f, indent=1)
    with strategy.scope():
        model = RegionRanker(vocab_size=vocab.size, image_size=cfg.data.image_size, **cfg.model_args)
    print(f"{cfg.name}: {model.count_params():,} parameters, vocabulary {vocab.size}, "
          f"{stats['examples']['train']} training images, data {data_dir}")
    training = fit(model, cfg, data_dir, output, stats, verbose)
    if not is_chief():
        return {"training": training}
    model.save(os.path.join(output, "model.keras"))

    max_regions = int(cfg.task_args.get("max_regions", ranker_data.DEFAULT_MAX_REGIONS))
    start = time.perf_counter()
    test = embed_split(model, data_dir, "test", max_regions)
    scores = score_matrix(model, test)
    np.save(os.path.join(output, "scores_test.npy"), scores)
    with open(os.path.join(output, "texts_test.json"), "w") as f:
        json.dump(test["texts"], f)
    result = {"preset": cfg.name, "split": "test", "data_dir": data_dir, "training": training,
              "test_images": len(test["image_ids"]), "skipped_images": test["skipped"],
              "retrieval": retrieval_report(scores, test["texts"])}
    for protocol, rows in result["retrieval"].items():
        fold = rows["model"]
        print(retrieval.format_retrieval_table(
            {cfg.name: rows["model"], "upper bound (duplicates)": rows["upper bound (duplicates)"]},
            f"test split, {protocol} protocol: {fold['folds']} fold(s) of {fold['images']} images"))
    scenes = cfg.task_args.get("scenes") or (
        None if cfg.data.data_dir else os.path.join(cfg.data.shapes_root, "world", "scenes.json"))
    if scenes:
        from vcaption.retrieval import alignment as align

        result["alignment"] = align.evaluate_alignment(model, data_dir, scenes, max_regions, output,
                                                       int(cfg.task_args.get("val_images", 1000)))
        print(align.format_alignment(result["alignment"]))
    else:
        print("alignment accuracy skipped: no scenes.json ground truth (--set task.scenes=PATH)")
    result["evaluation_seconds"] = round(time.perf_counter() - start, 1)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"metrics -> {os.path.join(output, 'metrics.json')}")
    return result
