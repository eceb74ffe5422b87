"""VQA (task "vqa"): `python -m vcaption.train --preset vqa_lstm_cnn`.

With the built-in data it generates the shapes world (if absent), preprocesses its VQA v2 files with
`beam_jobs.preprocess --format vqa` (answer vocabulary: the top K train answers in the official
normal form), trains the "deeper LSTM Q + norm I" model (`vcaption.vqa.model`) on soft targets,
keeps the weights of the checkpoint interval with the best validation VQA accuracy, and scores the
test split with the official VQA accuracy (`vcaption.metrics.vqa`) beside two baselines measured in
the same run (Antol et al. §5):

* "question only": the same model without the image (LSTM Q), trained the same way;
* "prior per question type": the most common training answer of each question type.

Writes to `<output>/`: metrics.json (overall, per answer type and per question type accuracy of each
system), results_test.json (official results format, scoreable with `python -m vcaption.evaluate
--task vqa`), model.keras / blind.keras, history.csv, and the SavedModel export
(`vcaption.vqa.export`) under `export.saved_models_dir`; `python -m vcaption.export --run <output>
[--top-k 5]` exports the run again later.

Task settings (`--set task.<name>=value`): `top_answers` K (default 1000), `target` "soft" or
"most_common" (`vqa.model.SoftTargetLoss`), `baselines` (default True), `encoder_from` (default
None: the encoder starts as `model.encoder_weights` says): a preset name, trained first inside the
run for its image encoder, or a trained run / `.keras` / `.weights.h5` path
(`vqa.pretrained_encoder.encoder_source`).
"""

from __future__ import annotations

import time

from vcaption import data as data_lib
from vcaption import encoders, registry
from vcaption.config import ExperimentConfig
from vcaption.metrics import vqa as vqa_metrics
from vcaption.runtime import builtin_data, devices
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained, task_settings
from vcaption.runtime.trainer import TrainingPlan, steps_per_epoch
from vcaption.vqa import evaluation
from vcaption.vqa import export as vqa_export
from vcaption.vqa.model import SoftTargetLoss, vqa_accuracy
from vcaption.vqa.pretrained_encoder import encoder_source

DEFAULT_TASK_ARGS = {"top_answers": 1000, "target": "soft", "baselines": True, "encoder_from": None}
# Batch size of the validation and test passes (no gradients: larger than training batches).
EVAL_BATCH_SIZE = 256
# Rows of the printed table and of metrics.json's "baselines".
QUESTION_ONLY = "question only (LSTM Q)"
PRIOR = "prior per question type"


def task_args(cfg: ExperimentConfig) -> dict:
    """The preset's `task_args` over `DEFAULT_TASK_ARGS`; unknown settings are an error."""
    return task_settings(cfg, DEFAULT_TASK_ARGS)


def build_model(cfg: ExperimentConfig, vocab_size: int, num_answers: int, blind: bool = False,
                encoder_weights_from: str | None = None):
    """The preset's `VQAModel`.

    Args:
        cfg: the run's config (`model`, `model_args` with dtype "auto" resolved, `data.feature_dim`).
        vocab_size: question vocabulary size.
        num_answers: K, the answer vocabulary size.
        blind: the question-only baseline: no image path at all.
        encoder_weights_from: a trained source (`pretrained_encoder.encoder_source`) whose
            encoder weights the image encoder starts from.
    """
    args = devices.resolve_dtype(cfg.model_args)
    if blind:
        args["image"] = False
    elif cfg.data.feature_dim:
        args.update(encoder="features", feature_dim=cfg.data.feature_dim)
        args.pop("image_size", None)
    model = registry.build(cfg.model, vocab_size=vocab_size, num_answers=num_answers, **args)
    if encoder_weights_from and not blind:
        encoders.load_encoder_weights(model.encoder, encoder_weights_from)
        print(f"{cfg.name}: image encoder initialised from {encoder_weights_from}")
    return model


def _without_image(inputs, scores):
    return {"question": inputs["question"]}, scores


def training_plan(cfg: ExperimentConfig, data: PreparedData, blind: bool = False) -> TrainingPlan:
    """How the model (or the question-only baseline) trains: soft-target cross-entropy on the train
    split, the best checkpoint interval kept by validation VQA accuracy (Keras's "val_vqa_accuracy"
    of `validation_data`)."""
    settings, tcfg = task_args(cfg), cfg.train
    num_answers = len(data.answers())
    common = dict(image_size=cfg.data.image_size, feature_dim=cfg.data.feature_dim,
                  answer_vocab_size=num_answers, blind=blind)
    train = data_lib.make_dataset(data.directory, "train", "vqa", batch_size=tcfg.batch_size, seed=tcfg.seed,
                                  repeat=True, **common)
    val = data_lib.make_dataset(data.directory, "val", "vqa", batch_size=EVAL_BATCH_SIZE, **common)
    if blind:  # the question-only model has no visual input at all
        train, val = train.map(_without_image), val.map(_without_image)
    return TrainingPlan("question-only baseline" if blind else cfg.name, train,
                        steps_per_epoch(data.stats["examples"]["train"], tcfg.batch_size),
                        prefix="blind_" if blind else "", loss=SoftTargetLoss(settings["target"]),
                        metrics=[vqa_accuracy], validation_data=val, monitor="val_vqa_accuracy", mode="max")


class VQATask(Task):
    """The VQA model and its two baselines (Antol et al. §5).

    One instance serves one run: `prepare_data` also trains or finds the encoder source, which
    `systems` then loads, and starts the clock of metrics.json's "seconds" (training of the
    source, the model and the baseline, and evaluation; not preprocessing, nor export).
    """

    name = "vqa"

    def __init__(self):
        self.encoder_source: str | None = None
        self.started = time.perf_counter()

    def prepare_data(self, cfg, run, verbose):
        settings = task_args(cfg)
        data = builtin_data.prepared_data(cfg.data, "vqa", ["--top-answers", str(settings["top_answers"])])
        self.started = time.perf_counter()
        if settings["encoder_from"]:
            self.encoder_source = encoder_source(settings["encoder_from"], cfg, run.path, verbose)
        return data

    def systems(self, cfg, data, run):
        vocab_size, num_answers = data.vocabulary().size, len(data.answers())
        print(f"{cfg.name}: vocabulary {vocab_size}, {num_answers} answers, "
              f"{data.stats['examples']['train']} training questions")
        systems = [System(cfg.name, lambda: build_model(cfg, vocab_size, num_answers,
                                                        encoder_weights_from=self.encoder_source),
                          lambda model: training_plan(cfg, data))]
        if task_args(cfg)["baselines"]:
            systems.append(System("blind", lambda: build_model(cfg, vocab_size, num_answers, blind=True),
                                  lambda model: training_plan(cfg, data, blind=True), "blind.keras"))
        return systems

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        answers, stats = data.answers(), data.stats
        image_size, feature_dim = cfg.data.image_size, cfg.data.feature_dim
        truth = evaluation.ground_truth(data, "test")
        predictions = evaluation.predict_answers(trained[cfg.name].model, answers, data, "test",
                                                 image_size, feature_dim, EVAL_BATCH_SIZE)
        scores = {cfg.name: vqa_metrics.score(predictions, truth)}
        result = {"preset": cfg.name, "split": "test", "data_dir": data.directory, "answers": len(answers),
                  "data": {k: stats.get(k) for k in ("examples", "questions_without_top_answer",
                                                     "questions_without_answers", "answers_outside_top_k")},
                  "training": trained[cfg.name].training, "baselines": {}}
        if "blind" in trained:
            blind = evaluation.predict_answers(trained["blind"].model, answers, data, "test", image_size,
                                               feature_dim, EVAL_BATCH_SIZE)
            scores[QUESTION_ONLY] = vqa_metrics.score(blind, truth)
            prior = evaluation.question_type_prior(evaluation.ground_truth(data, "train"))
            scores[PRIOR] = vqa_metrics.score(evaluation.prior_predictions(prior, truth, answers[0]), truth)
            result["baselines"] = {"question_only": vqa_metrics.public(scores[QUESTION_ONLY]),
                                   "question_only_training": trained["blind"].training,
                                   "prior_per_question_type": vqa_metrics.public(scores[PRIOR])}
        result["model"] = vqa_metrics.public(scores[cfg.name])
        question_only = result["baselines"].get("question_only", {}).get("overall", 0)
        if question_only > 0:
            result["ratio_to_question_only"] = result["model"]["overall"] / question_only
        result["seconds"] = round(time.perf_counter() - self.started, 1)
        evaluation.write_results(run.file("results_test.json"), predictions)
        print(vqa_metrics.format_table(scores, f"VQA accuracy (%), test split, {len(truth)} questions"))
        if "ratio_to_question_only" in result:
            print(f"model / question-only = {result['ratio_to_question_only']:.2f}x")
        return result

    def export(self, cfg, data, trained, run):
        model = trained[cfg.name].model
        return vqa_export.export_vqa(model, run.data.vocabulary_path, run.data.answers_path,
                                     cfg.export.saved_models_dir, cfg.export.name or cfg.name,
                                     model.image_size or cfg.data.image_size)

    def export_run(self, run, output, name, options):
        model = registry.load_model(run.file("model.keras"))
        image_size = model.image_size or run.read_config().get("data", {}).get("image_size")
        return vqa_export.export_vqa(model, run.data.vocabulary_path, run.data.answers_path, output, name,
                                     image_size, options.get("top_k") or vqa_export.DEFAULT_TOP_K)
