"""Object classifier (task "objects"): `python -m vcaption.train --preset object_classifier`.

Trains an image encoder the way VGG-16 was trained for Antol et al.'s VQA features — by classifying
the objects in images — on data the built-in world has: its Visual Genome region descriptions
(`visual_genome/region_descriptions.json`, a phrase and a box per object), preprocessed by
`beam_jobs.preprocess --format vg`. Each image gets the multi-hot target of `LabelVocabulary`
(`vcaption.objects.labels`): every region phrase it shows ("small red circle") and the phrase's
endings ("red circle", "circle"), each anywhere and in the 3x3 grid cell of the box centre ("red
circle @ top left"). The VQA preset starts its encoder from this run (`--set
task.encoder_from=object_classifier`, `vcaption.vqa.pretrained_encoder.encoder_source`).

Test metrics (`metrics.json`) of the model and of the label-prior baseline (every image scored with
the labels' training frequencies, i.e. the best a classifier can do without looking): mean average
precision over the labels, exact-set accuracy (the predicted set at p > 0.5 is the true set) and
micro-F1 — over all labels and over the "anywhere" labels alone (which objects the image shows)
(`vcaption.objects.evaluation`). The model is kept at its checkpoint interval of lowest validation
loss; the label names are written to `<output>/labels.txt`.

Task settings (`--set task.<name>=value`): `max_phrases` (default 1000) most frequent training
phrases and endings with at least `data.min_count` regions become labels; regions none of whose
phrase and endings is a label are counted in `metrics.json` ("regions_outside_labels").

There is no SavedModel export: the product of this run is its encoder, inside `model.keras`.
"""

from __future__ import annotations

import keras
import numpy as np

from vcaption import registry
from vcaption.config import ExperimentConfig
from vcaption.objects import evaluation
from vcaption.objects.labels import LabelVocabulary, make_dataset, targets_frequency
from vcaption.runtime import builtin_data, devices
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained, task_settings
from vcaption.runtime.trainer import TrainingPlan, steps_per_epoch

DEFAULT_TASK_ARGS = {"max_phrases": 1000}
# Batch size of the validation and test passes (no gradients: larger than training batches).
EVAL_BATCH_SIZE = 256
LABELS_FILE = "labels.txt"


def task_args(cfg: ExperimentConfig) -> dict:
    """The preset's `task_args` over `DEFAULT_TASK_ARGS`; unknown settings are an error."""
    return task_settings(cfg, DEFAULT_TASK_ARGS)


def build_model(cfg: ExperimentConfig, labels: LabelVocabulary):
    """The preset's `ObjectClassifier` with one logit per label (`model.dtype` "auto" resolved)."""
    return registry.build(cfg.model, num_labels=labels.size, **devices.resolve_dtype(cfg.model_args))


def training_plan(cfg: ExperimentConfig, data: PreparedData, labels: LabelVocabulary) -> TrainingPlan:
    """How the classifier trains: a sigmoid cross-entropy per label on the train split, the best
    checkpoint interval kept by validation loss (Keras's "val_loss" of `validation_data`)."""
    tcfg, image_size = cfg.train, cfg.data.image_size
    train = make_dataset(data, "train", labels, image_size, tcfg.batch_size, training=True, seed=tcfg.seed,
                         repeat=True)
    val = make_dataset(data, "val", labels, image_size, EVAL_BATCH_SIZE)
    # Several labels are true at once: independent sigmoids, and a logit > 0 means p > 0.5.
    return TrainingPlan(cfg.name, train, steps_per_epoch(data.stats["examples"]["train"], tcfg.batch_size),
                        loss=keras.losses.BinaryCrossentropy(from_logits=True),
                        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="label_accuracy")],
                        validation_data=val, monitor="val_loss", mode="min")


class ObjectsTask(Task):
    """The object classifier and its label-prior baseline.

    One instance serves one run: `prepare_data` ranks the labels from the training records (and
    writes their names to the run's labels.txt), which `systems` and `evaluate` then use.
    """

    name = "objects"

    def __init__(self):
        self.labels: LabelVocabulary | None = None
        self.label_stats: dict = {}

    def prepare_data(self, cfg, run, verbose):
        data = builtin_data.prepared_data(cfg.data, "vg")
        self.labels, self.label_stats = LabelVocabulary.from_records(
            data, task_args(cfg)["max_phrases"], cfg.data.min_count)
        self.labels.write(run.file(LABELS_FILE))
        return data

    def systems(self, cfg, data, run):
        labels = self.labels
        print(f"{cfg.name}: {labels.size} labels ({len(labels.phrases)} phrases x "
              f"{LabelVocabulary.PER_PHRASE}), {data.stats['examples']['train']} training images")
        return [System(cfg.name, lambda: build_model(cfg, labels),
                       lambda model: training_plan(cfg, data, labels))]

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        labels = self.labels
        logits, targets = evaluation.logits_and_targets(trained[cfg.name].model, data, "test", labels,
                                                        cfg.data.image_size, EVAL_BATCH_SIZE)
        rows = {cfg.name: evaluation.score(logits, targets, logits > 0.0, labels)}
        prior_scores = np.broadcast_to(targets_frequency(data, labels), targets.shape)
        rows["label prior"] = evaluation.score(prior_scores, targets, prior_scores > 0.5, labels)
        result = {"preset": cfg.name, "split": "test", "data_dir": data.directory, "labels": labels.size,
                  "phrases": len(labels.phrases),
                  "data": {"examples": data.stats["examples"], **self.label_stats},
                  "training": trained[cfg.name].training, "model": rows[cfg.name],
                  "baselines": {"label_prior": rows["label prior"]}}
        print(evaluation.format_table(rows, f"Object labels (%), test split, {len(targets)} images"))
        print(f"{cfg.name}: no SavedModel export; its encoder is used by other presets "
              f"(--set task.encoder_from={cfg.name})")
        return result
