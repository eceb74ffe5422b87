"""VQA trainer: `python -m vcaption.train --preset vqa_lstm_cnn` (task "vqa", `train.TASK_TRAINERS`).

With the built-in data it generates the shapes world (if absent), preprocesses its VQA v2 files with
`beam_jobs.preprocess --format vqa` (answer vocabulary: the top K train answers in the official
normal form), trains the "deeper LSTM Q + norm I" model (`vcaption.vqa.model`) on soft targets,
keeps the weights of the checkpoint interval with the best validation VQA accuracy, and scores the
test split with the official VQA accuracy (`vcaption.metrics.vqa`) beside two baselines measured in
the same run (Antol et al. §5):

* "question only": the same model without the image (LSTM Q), trained the same way;
* "prior per question type": the most common training answer of each question type.

Writes to `<output>/`: metrics.json (overall, per answer type and per question type accuracy of each
system), results_test.json (official results format, scoreable with `python -m vcaption.captioning.evaluation
--task vqa`), model.keras / blind.keras, history.csv, and the SavedModel export
(`vcaption.vqa.export`) under `export.saved_models_dir`.

Task settings (`--set task.<name>=value`): `top_answers` K (default 1000), `target` "soft" or
"most_common" (`models.vqa.SoftTargetLoss`), `baselines` (default True), `encoder_from` (default
None: the encoder starts as `model.encoder_weights` says): a preset name, trained first inside the
run for its image encoder, or a trained run / `.keras` / `.weights.h5` path (`encoder_source`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import time

import tensorflow as tf

from vcaption import config as config_lib
from vcaption import presets
from vcaption import data, encoders, images, records, train
from vcaption.config import ExperimentConfig
from vcaption.metrics import vqa as vqa_metrics

DEFAULT_TASK_ARGS = {"top_answers": 1000, "target": "soft", "baselines": True, "encoder_from": None}


def task_args(cfg: ExperimentConfig) -> dict:
    unknown = set(cfg.task_args) - set(DEFAULT_TASK_ARGS)
    if unknown:
        raise ValueError(f"unknown vqa task settings {sorted(unknown)}; known: {sorted(DEFAULT_TASK_ARGS)}")
    return {**DEFAULT_TASK_ARGS, **cfg.task_args}


def prepare_builtin_vqa_data(cfg: config_lib.DataConfig, top_answers: int) -> str:
    """The built-in world's VQA v2 files preprocessed once; returns the records directory."""
    return train.prepare_builtin_data(cfg, "vqa", ["--top-answers", str(top_answers)])


def read_answers(data_dir: str) -> list[str]:
    with tf.io.gfile.GFile(os.path.join(data_dir, "answers.txt")) as f:
        return f.read().splitlines()


def build_model(cfg: ExperimentConfig, vocab_size: int, num_answers: int, blind: bool = False):
    from vcaption import registry as models

    args = dict(cfg.model_args)
    if blind:
        args["image"] = False
    elif cfg.data.feature_dim:
        args.update(encoder="features", feature_dim=cfg.data.feature_dim)
        args.pop("image_size", None)
    return models.build(cfg.model, vocab_size=vocab_size, num_answers=num_answers, **args)


def encoder_source(encoder_from: str, cfg: ExperimentConfig, output: str, verbose: int = 1) -> str:
    """Where the image encoder's trained weights come from (task setting `encoder_from`).

    A preset name (say "lrcn_2f") is trained first, on this run's built-in world and for its
    encoder only (no baselines, no export), in `<output>/encoder_<name>` — and resumed or reused
    from there like any run. Anything else is a path for `encoders.load_encoder_weights` (e.g.
    `runs/lrcn_2f`). A run trained on another built-in world is refused: its training images may
    be this run's test images.
    """
    if encoder_from not in presets.PRESETS:
        _check_same_world(encoder_from, cfg)
        return encoder_from
    run_dir = os.path.join(output, f"encoder_{encoder_from}")
    if not os.path.exists(os.path.join(run_dir, "model.keras")):
        if cfg.data.data_dir:
            raise ValueError(f"encoder_from={encoder_from!r} trains that preset on the built-in world, "
                             f"but this run reads {cfg.data.data_dir}: give a trained run directory")
        source = presets.get_preset(encoder_from)
        same_encoder = {k: cfg.model_args[k] for k in ("encoder", "image_size") if k in cfg.model_args}
        source = dataclasses.replace(
            source, model_args={**source.model_args, **same_encoder},
            data=dataclasses.replace(source.data, shapes_root=cfg.data.shapes_root,
                                     shapes_images=cfg.data.shapes_images,
                                     shapes_seed=cfg.data.shapes_seed, image_size=cfg.data.image_size),
            train=dataclasses.replace(source.train, baselines=False),
            export=dataclasses.replace(source.export, saved_models_dir=""))
        print(f"{cfg.name}: training {encoder_from} first, for its image encoder -> {run_dir}")
        train.run(source, run_dir, verbose=verbose)
    _check_same_world(run_dir, cfg)
    return run_dir


def _check_same_world(source: str, cfg: ExperimentConfig) -> None:
    """Refuses a source run (its config.json) trained on another built-in world than `cfg`'s."""
    run_dir = source if os.path.isdir(source) else os.path.dirname(source)
    config_path = os.path.join(run_dir, "config.json")
    if cfg.data.data_dir or not os.path.isfile(config_path):
        return
    with open(config_path) as f:
        trained_on = json.load(f).get("data", {})
    world = ("shapes_images", "shapes_seed")
    if not trained_on.get("data_dir") and any(trained_on.get(k) != getattr(cfg.data, k) for k in world):
        raise ValueError(
            f"the encoder in {source} was trained on a built-in world of {trained_on.get('shapes_images')} "
            f"images (seed {trained_on.get('shapes_seed')}), this run uses {cfg.data.shapes_images} "
            f"(seed {cfg.data.shapes_seed}): its training images may be this run's test images")


def _without_image(inputs, scores):
    return {"question": inputs["question"]}, scores


def fit(model, cfg: ExperimentConfig, data_dir: str, output: str, stats: dict, num_answers: int,
        target: str, *, blind: bool = False, verbose: int = 1) -> dict:
    """Trains `model` on the train split, resumably; keeps the best interval by validation accuracy.

    Returns:
        {"steps", "seconds", "best_val_vqa_accuracy"}.
    """
    import keras

    from vcaption.vqa.model import SoftTargetLoss, vqa_accuracy

    tcfg = cfg.train
    steps_per_epoch = math.ceil(stats["examples"]["train"] / tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs
    intervals, interval = train.checkpoint_intervals(total_steps, tcfg.checkpoint_every)
    common = dict(image_size=cfg.data.image_size, feature_dim=cfg.data.feature_dim,
                  answer_vocab_size=num_answers, blind=blind)
    train_data = data.make_dataset(data_dir, "train", "vqa", batch_size=tcfg.batch_size, seed=tcfg.seed,
                                   repeat=True, **common)
    val_data = data.make_dataset(data_dir, "val", "vqa", batch_size=256, **common)
    if blind:  # the question-only model has no visual input at all
        train_data, val_data = train_data.map(_without_image), val_data.map(_without_image)
    with model.distribute_strategy.scope():
        model.compile(optimizer=train.make_optimizer(tcfg, total_steps), loss=SoftTargetLoss(target),
                      metrics=[vqa_accuracy])
    prefix = "blind_" if blind else ""
    best_path = os.path.join(output, f"{prefix}best.weights.h5")
    callbacks = train.resumable_callbacks(output, prefix, [
        keras.callbacks.ModelCheckpoint(best_path, monitor="val_vqa_accuracy", mode="max",
                                        save_best_only=True, save_weights_only=True)])
    name = "question-only baseline" if blind else cfg.name
    print(f"{name}: {tcfg.epochs} epochs of {steps_per_epoch} steps (batch {tcfg.batch_size}) = "
          f"{intervals} checkpoint intervals of {interval} steps")
    start = time.perf_counter()
    history = model.fit(train_data, epochs=intervals, steps_per_epoch=interval, validation_data=val_data,
                        callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start
    steps = train.optimizer_steps(model)
    if os.path.exists(best_path):
        model.load_weights(best_path)
    val = history.history.get("val_vqa_accuracy") or [float("nan")]
    return {"steps": steps, "seconds": round(seconds, 1), "best_val_vqa_accuracy": float(max(val))}


# ----------------------------------------------------------------------------------------------
# Evaluation on the records: official accuracy of decoded answer strings.


def _eval_elements(data_dir: str, split: str, image_size: int, feature_dim: int | None, batch_size: int):
    def to_element(serialized):
        parsed = records.parse_vqa_example(serialized, feature_dim)
        visual = (parsed["features"] if feature_dim is not None
                  else images.preprocess_image(parsed["image_jpeg"], image_size))
        return {"question_id": parsed["question_id"], "visual": visual,
                "question": tf.cast(parsed["question_ids"], tf.int32)}

    serialized = data.read_records(data.split_pattern(data_dir, split), shuffle=False)
    return serialized.map(to_element, num_parallel_calls=tf.data.AUTOTUNE).padded_batch(batch_size)


def ground_truth(data_dir: str, split: str) -> dict[str, dict]:
    """{question_id: {"answers", "answer_type", "question_type", "multiple_choice_answer"}} of a
    split's records (no image is decoded)."""
    truth = {}
    serialized = data.read_records(data.split_pattern(data_dir, split), shuffle=False)
    for parsed in serialized.map(records.parse_vqa_example).as_numpy_iterator():
        truth[parsed["question_id"].decode()] = {
            "answers": [a.decode() for a in parsed["answers"]],
            "answer_type": parsed["answer_type"].decode(),
            "question_type": parsed["question_type"].decode(),
            "multiple_choice_answer": parsed["multiple_choice_answer"].decode()}
    return truth


def predict_answers(model, answers: list[str], data_dir: str, split: str, image_size: int,
                    feature_dim: int | None = None, batch_size: int = 256) -> dict[str, str]:
    """{question_id: the model's top answer} over a split's records."""
    predictions = {}
    for batch in _eval_elements(data_dir, split, image_size, feature_dim, batch_size):
        inputs = {"question": batch["question"]}
        if model.image:
            inputs["visual"] = batch["visual"]
        best = tf.argmax(model(inputs, training=False), axis=-1).numpy()  # [batch]
        for question_id, index in zip(batch["question_id"].numpy(), best):
            predictions[question_id.decode()] = answers[int(index)]
    return predictions


def question_type_prior(train_truth: dict[str, dict]) -> dict[str, str]:
    """Antol et al. §5 "prior (per Q type)": the most common (normalised) training answer of each
    question type; ties go to the answer seen first."""
    counts = collections.defaultdict(collections.Counter)
    for t in train_truth.values():
        counts[t["question_type"]][vqa_metrics.normalize_answer(t["multiple_choice_answer"])] += 1
    return {q: c.most_common(1)[0][0] for q, c in counts.items()}


def prior_predictions(prior: dict[str, str], truth: dict[str, dict], fallback: str) -> dict[str, str]:
    """The prior's answer for every question (`fallback`, the top answer, for unseen types)."""
    return {q: prior.get(t["question_type"], fallback) for q, t in truth.items()}


def write_results(path: str, predictions: dict[str, str]) -> None:
    """Official VQA results format: [{"question_id": int, "answer": str}]."""
    results = [{"question_id": int(q) if q.isdigit() else q, "answer": a}
               for q, a in sorted(predictions.items(), key=lambda qa: (len(qa[0]), qa[0]))]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


# ----------------------------------------------------------------------------------------------
# The run.


def run(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Trains the VQA model and the question-only baseline, scores them and the per-question-type
    prior on the test split, exports the model; writes and returns `<output>/metrics.json`."""
    import keras

    from vcaption import text

    strategy = train.distribution_strategy(strategy_name)
    keras.utils.set_random_seed(cfg.train.seed)
    settings = task_args(cfg)
    output = train.worker_output(output)
    os.makedirs(output, exist_ok=True)
    data_dir = cfg.data.data_dir or prepare_builtin_vqa_data(cfg.data, settings["top_answers"])
    stats = train.read_stats(data_dir)
    vocab = text.Vocabulary(os.path.join(data_dir, "vocab.txt"))
    answers = read_answers(data_dir)
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(cfg.to_dict() | {"data_dir": data_dir}, f, indent=1)

    start = time.perf_counter()
    source = settings["encoder_from"] and encoder_source(settings["encoder_from"], cfg, output, verbose)
    keras.utils.set_random_seed(cfg.train.seed)  # the same start with or without a source run
    with strategy.scope():
        model = build_model(cfg, vocab.size, len(answers))
        if source:
            encoders.load_encoder_weights(model.encoder, source)
            print(f"{cfg.name}: image encoder initialised from {source}")
    print(f"{cfg.name}: {model.count_params():,} parameters, vocabulary {vocab.size}, "
          f"{len(answers)} answers, "
          f"{stats['examples']['train']} training questions, data {data_dir}")
    training = fit(model, cfg, data_dir, output, stats, len(answers), settings["target"], verbose=verbose)
    blind_model = None
    if settings["baselines"]:
        with strategy.scope():
            blind_model = build_model(cfg, vocab.size, len(answers), blind=True)
        blind_training = fit(blind_model, cfg, data_dir, output, stats, len(answers), settings["target"],
                             blind=True, verbose=verbose)
    if not train.is_chief():
        return {"training": training}
    model.save(os.path.join(output, "model.keras"))

    image_size, feature_dim = cfg.data.image_size, cfg.data.feature_dim
    truth = ground_truth(data_dir, "test")
    predictions = predict_answers(model, answers, data_dir, "test", image_size, feature_dim)
    scores = {cfg.name: vqa_metrics.score(predictions, truth)}
    result = {"preset": cfg.name, "split": "test", "data_dir": data_dir, "answers": len(answers),
              "data": {k: stats.get(k) for k in ("examples", "questions_without_top_answer",
                                                 "questions_without_answers", "answers_outside_top_k")},
              "training": training, "baselines": {}}
    if blind_model is not None:
        blind_model.save(os.path.join(output, "blind.keras"))
        scores["question only (LSTM Q)"] = vqa_metrics.score(
            predict_answers(blind_model, answers, data_dir, "test", image_size, feature_dim), truth)
        prior = question_type_prior(ground_truth(data_dir, "train"))
        scores["prior per question type"] = vqa_metrics.score(
            prior_predictions(prior, truth, answers[0]), truth)
        result["baselines"] = {
            "question_only": vqa_metrics.public(scores["question only (LSTM Q)"]),
            "question_only_training": blind_training,
            "prior_per_question_type": vqa_metrics.public(scores["prior per question type"])}
    result["model"] = vqa_metrics.public(scores[cfg.name])
    if blind_model is not None and result["baselines"]["question_only"]["overall"] > 0:
        blind_overall = result["baselines"]["question_only"]["overall"]
        result["ratio_to_question_only"] = result["model"]["overall"] / blind_overall
    result["seconds"] = round(time.perf_counter() - start, 1)

    if cfg.export.saved_models_dir:
        from vcaption.vqa import export as export_vqa

        result["export"] = export_vqa.export_vqa(
            model, os.path.join(data_dir, "vocab.txt"), os.path.join(data_dir, "answers.txt"),
            cfg.export.saved_models_dir, cfg.export.name or cfg.name, image_size)
        print(f"SavedModel -> {result['export']}")
    write_results(os.path.join(output, "results_test.json"), predictions)
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(vqa_metrics.format_table(scores, f"VQA accuracy (%), test split, {len(truth)} questions"))
    if "ratio_to_question_only" in result:
        print(f"model / question-only = {result['ratio_to_question_only']:.2f}x")
    print(f"metrics -> {os.path.join(output, 'metrics.json')}")
    return result
