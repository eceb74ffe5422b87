"""The region-embedding ranker (task "retrieval"): `python -m vcaption.train --preset karpathy_ranker`.

Data: the preset's `data.data_dir`, or the built-in shapes world preprocessed from its COCO files,
whose instance boxes become the regions of every caption record. System: the preset's model
(`RegionRanker`) trained with the max-margin loss of Eq. 9, kept at the checkpoint interval with the
best validation R@1 + R@5 + R@10 (annotation + search, "val_recall_sum"). Evaluation on the test
split writes

- `scores_test.npy` (rows images, columns sentences, sentence j of image j // 5) and
  `texts_test.json` (the normalized sentences in column order), which
  `python -m vcaption.evaluate --task retrieval --scores ... --texts ...` re-scores;
- `metrics.json`: the retrieval table per protocol beside the upper bound that duplicate
  sentences allow, the alignment accuracy (β chosen on val) and the training time;
- `alignments_test.json` (Visual Genome region format), `alignment_test.png` (Fig. 5 style).

Export (`--set export.saved_models_dir=DIR`, or later `python -m vcaption.export --run DIR`): the
ranker SavedModel of `vcaption.retrieval.export`.

The whole-image embedding models (`VisualSemanticEmbedding`: presets `vsepp_mh`, `kiros_sh`) run
through this task too — they offer the ranker's `embed_regions` / `embed_words` / `score` — on the
same data, with the same validation and test evaluation; they have no alignment, and export the
`embed_image` / `embed_sentence` / `score` SavedModel of `export.export_vse`.

`task_args`: `max_regions` (R, whole image included), `val_images` (images scored for model
selection and β), `scenes` (scenes.json ground truth for alignment accuracy; found by itself for
the built-in world).
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

from vcaption import registry
from vcaption.config import ExperimentConfig
from vcaption.metrics import retrieval
from vcaption.retrieval import alignment
from vcaption.retrieval import data as ranker_data
from vcaption.retrieval.embedding import embed_split, score_matrix
from vcaption.retrieval.export import export_ranker, export_vse
from vcaption.retrieval.ranker import RegionRanker
from vcaption.runtime import builtin_data, devices
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained
from vcaption.runtime.trainer import TrainingPlan

MONITOR = "val_recall_sum"
# Val images scored after every checkpoint interval (and for β) unless task.val_images says.
DEFAULT_VAL_IMAGES = 1000


def max_regions(cfg: ExperimentConfig) -> int:
    return int(cfg.task_args.get("max_regions", ranker_data.DEFAULT_MAX_REGIONS))


def recall_sum(result: dict) -> float:
    """R@1 + R@5 + R@10 of image annotation plus those of image search (model selection)."""
    return sum(result[side][f"R@{k}"] for side in ("annotation", "search") for k in retrieval.RECALL_AT)


class ValidationRecall(keras.callbacks.Callback):
    """Scores the val split (1K protocol) after every checkpoint interval; logs "val_recall_sum"
    (what keep-best selects by) and the R@1 of both directions.

    Args:
        model: the ranker in training.
        data_dir: records with region boxes.
        max_regions: R, boxes per image including the whole image.
        limit: val images scored (the first ones).
    """

    def __init__(self, model, data_dir: str, max_regions: int, limit: int):
        super().__init__()
        self.ranker, self.data_dir, self.max_regions, self.limit = model, data_dir, max_regions, limit

    def on_epoch_end(self, epoch, logs=None):
        embedded = embed_split(self.ranker, self.data_dir, "val", self.max_regions, limit=self.limit)
        result = retrieval.evaluate_retrieval(score_matrix(self.ranker, embedded), "1K")
        if logs is not None:
            logs[MONITOR] = recall_sum(result)
            logs["val_annotation_R@1"] = result["annotation"]["R@1"]
            logs["val_search_R@1"] = result["search"]["R@1"]


def build_model(cfg: ExperimentConfig, vocab_size: int):
    """The preset's model (`cfg.model`, a `RegionRanker` in the presets) for `vocab_size` words."""
    args = devices.resolve_dtype(cfg.model_args)
    return registry.build(cfg.model, vocab_size=vocab_size, image_size=cfg.data.image_size, **args)


def training_plan(cfg: ExperimentConfig, data: PreparedData, model) -> TrainingPlan:
    """Eq. 9 over minibatches of `train.batch_size` images, one sentence each (the model adds its
    own loss); an epoch is a pass over the training images."""
    tcfg = cfg.train
    train = ranker_data.training_dataset(data.directory, "train", tcfg.batch_size, model.image_size,
                                         max_regions(cfg), seed=tcfg.seed)
    # Whole batches only: the training batches drop the remainder (Eq. 9 needs batch_size negatives).
    per_epoch = max(1, data.stats["examples"]["train"] // tcfg.batch_size)
    validation = ValidationRecall(model, data.directory, max_regions(cfg),
                                  int(cfg.task_args.get("val_images", DEFAULT_VAL_IMAGES)))
    return TrainingPlan(cfg.name, train, per_epoch, callbacks=[validation], monitor=MONITOR)


def retrieval_report(scores: np.ndarray, texts) -> dict:
    """{protocol: {"model": ..., "upper bound (duplicates)": ...}} for every available protocol."""
    report = {}
    for protocol in retrieval.available_protocols(scores.shape[0]):
        report[protocol] = {"model": retrieval.evaluate_retrieval(scores, protocol),
                            "upper bound (duplicates)": retrieval.duplicate_upper_bound(texts, protocol)}
    return report


def scenes_path(cfg: ExperimentConfig) -> str | None:
    """The alignment ground truth: task.scenes, else the built-in world's (None for other data)."""
    return builtin_data.scenes_path(cfg.data, cfg.task_args.get("scenes"))


class RankerTask(Task):
    name = "retrieval"

    def prepare_data(self, cfg, run, verbose):
        return builtin_data.prepared_data(cfg.data, "coco")

    def systems(self, cfg, data, run):
        vocab_size = data.vocabulary().size
        print(f"{cfg.name}: vocabulary {vocab_size}, {data.stats['examples']['train']} training images")
        return [System(cfg.name, lambda: build_model(cfg, vocab_size),
                       lambda model: training_plan(cfg, data, model))]

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        model = trained[cfg.name].model
        start = time.perf_counter()
        test = embed_split(model, data.directory, "test", max_regions(cfg))
        scores = score_matrix(model, test)
        with tf.io.gfile.GFile(run.file("scores_test.npy"), "wb") as f:
            np.save(f, scores)
        run.write_json("texts_test.json", test["texts"])
        result = {"preset": cfg.name, "split": "test", "data_dir": data.directory,
                  "training": trained[cfg.name].training, "test_images": len(test["image_ids"]),
                  "skipped_images": test["skipped"], "retrieval": retrieval_report(scores, test["texts"])}
        for protocol, rows in result["retrieval"].items():
            fold = rows["model"]
            print(retrieval.format_retrieval_table(
                {cfg.name: rows["model"], "upper bound (duplicates)": rows["upper bound (duplicates)"]},
                f"test split, {protocol} protocol: {fold['folds']} fold(s) of {fold['images']} images"))
        scenes = scenes_path(cfg)
        if not isinstance(model, RegionRanker):
            print(f"alignment accuracy skipped: {type(model).__name__} has no regions to align words to")
        elif scenes:
            result["alignment"] = alignment.evaluate_alignment(
                model, data.directory, scenes, max_regions(cfg), run.path,
                int(cfg.task_args.get("val_images", DEFAULT_VAL_IMAGES)))
            print(alignment.format_alignment(result["alignment"]))
        else:
            print("alignment accuracy skipped: no scenes.json ground truth (--set task.scenes=PATH)")
        result["evaluation_seconds"] = round(time.perf_counter() - start, 1)
        return result

    def export(self, cfg, data, trained, run):
        return export_model(trained[cfg.name].model, run.data.vocabulary_path, cfg.export.saved_models_dir,
                            cfg.export.name or cfg.name, cfg.data.max_length)

    def export_run(self, run, output, name, options):
        ignored = sorted(f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None)
        if ignored:
            print(f"export: a ranker has no {', '.join(ignored)}; ignored")
        config = run.read_config()
        return export_model(registry.load_model(run.file("model.keras")), run.data.vocabulary_path, output,
                            name, config["data"]["max_length"])


def export_model(model, vocab_path: str, output: str, name: str, max_length: int) -> str:
    """The region ranker's SavedModel, or the whole-image embedding's (`export.export_vse`)."""
    export = export_ranker if isinstance(model, RegionRanker) else export_vse
    return export(model, vocab_path, output, name, max_length)
