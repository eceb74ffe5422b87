"""Image captioning (task "caption"): the default `python -m vcaption.train` and every captioner preset.

    python -m vcaption.train [--preset lrcn_2f] [--output runs/<preset>] [--set k=v ...]

Data: the preset's `data.data_dir`, or the built-in shapes world in Karpathy format. Systems: the
preset's captioner (LRCN 1u/2u/2f, Karpathy's multimodal RNN, Mao's m-RNN), kept at its best
checkpoint interval by validation CIDEr-D (greedy), and, with `train.baselines`, a blind language
model (the same decoder fed a constant instead of the image), which stops early once validation
loss no longer improves. Evaluation on the test split with beam search: pycocoevalcap metrics and
perplexity of the model, the blind LM and nearest-neighbour caption retrieval in the model's
encoder space; COCO-format results, per-image scores, a caption grid and training curves.
Export: the hermetic captioner SavedModel (`captioning.export`).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
from pycocoevalcap.cider.cider import Cider

from vcaption import data as data_lib
from vcaption import registry, text, visualize
from vcaption.captioning import baselines, evaluation, self_critical
from vcaption.captioning.export import export_captioner
from vcaption.config import DecodeConfig, ExperimentConfig
from vcaption.losses import MaskedCaptionLoss
from vcaption.metrics import grounding
from vcaption.runtime import builtin_data, devices, profile
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained
from vcaption.runtime.trainer import TrainingPlan, steps_per_epoch

# The blind baseline stops at the first checkpoint interval that lowers validation loss by less
# than this (nats per token: 1% of perplexity). A language model of the captions alone converges
# long before the captioner: on the 6,000-image world its training loss moves 1.48 -> 1.10 -> 1.09
# over the first three intervals and 0.02 over the last four, so training it for the captioner's
# whole schedule would only spend time (about 40% of the default run's training).
BLIND_MIN_IMPROVEMENT = 0.01


def build_model(cfg: ExperimentConfig, vocab_size: int, word_counts: np.ndarray | None,
                blind: bool = False):
    """The preset's model. `blind=True` gives the blind baseline: the same decoder whose visual
    input is a constant zero feature (`data.make_dataset(blind=True)`), so no CNN runs at all."""
    args = devices.resolve_dtype(cfg.model_args)
    if blind:
        args.update(encoder="features", feature_dim=data_lib.BLIND_FEATURE_DIM)
        args.pop("image_size", None)
    elif cfg.data.feature_dim:
        args.update(encoder="features", feature_dim=cfg.data.feature_dim)
        args.pop("image_size", None)
    model = registry.build(cfg.model, vocab_size=vocab_size, **args)
    if word_counts is not None and cfg.model == "KarpathyMultimodalRNN":
        model.initialize_output_bias(word_counts)  # Karpathy & Fei-Fei §3.2: b_o = log frequency
    return model


class ValidationCIDEr(keras.callbacks.Callback):
    """Greedy-decodes the val split after every checkpoint interval; logs "val_CIDEr" (CIDEr-D)."""

    def __init__(self, model, data: PreparedData, cfg: ExperimentConfig):
        super().__init__()
        self.vocab = data.vocabulary()
        self.dataset = data_lib.make_dataset(data.directory, "val", "caption_eval", batch_size=100,
                                             image_size=cfg.data.image_size, feature_dim=cfg.data.feature_dim)
        # Traced once for the whole run, not once per checkpoint interval.
        self.generate = evaluation.make_generator(model, DecodeConfig(beam_size=1, max_length=cfg.decode.max_length))
        self.references = None  # normalized once: they are the same every interval

    def on_epoch_end(self, epoch, logs=None):
        candidates, references, _ = evaluation.generate_captions(self.generate, self.vocab, self.dataset)
        # Both sides are already normalized by vcaption.text, so no PTB tokenizer (no Java) here.
        if self.references is None:
            keys = list(references)
            self.references = dict(zip(keys, text.normalized_caption_lists([references[k] for k in keys])))
        score, _ = Cider().compute_score(self.references, {k: [v] for k, v in candidates.items()})
        if logs is not None:
            logs["val_CIDEr"] = float(score)


class ValidationLoss(keras.callbacks.Callback):
    """Logs the blind model's teacher-forced validation loss (nats per token) as "val_loss".

    Computed here rather than by `Model.fit(validation_data=...)` so that the multi-worker loop
    gets it too: every worker scores the whole split with the same weights, so all of them stop
    at the same interval.
    """

    def __init__(self, model, data: PreparedData, cfg: ExperimentConfig):
        super().__init__()
        self.dataset = data_lib.make_dataset(data.directory, "val", "caption", batch_size=100,
                                             image_size=cfg.data.image_size, feature_dim=cfg.data.feature_dim,
                                             training=False, blind=True)
        self.nll = evaluation.teacher_forced_nll(model)
        self.scored = model

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["val_loss"] = math.log(evaluation.teacher_forced_perplexity(self.scored, self.dataset, self.nll))


def training_plan(cfg: ExperimentConfig, data: PreparedData, model, blind: bool = False,
                  steps: int | None = None) -> TrainingPlan:
    """How a captioner (or its blind baseline) trains on `data`: an epoch is a pass over the
    training captions unless `steps` gives the budget of one epoch explicitly."""
    tcfg = cfg.train
    train = data_lib.make_dataset(data.directory, "train", "caption", batch_size=tcfg.batch_size,
                                  image_size=cfg.data.image_size, feature_dim=cfg.data.feature_dim,
                                  seed=tcfg.seed, repeat=True, captions_per_image=tcfg.captions_per_image,
                                  blind=blind, word_dropout=tcfg.word_dropout)
    per_epoch = steps or steps_per_epoch(data.stats["captions"]["train"], tcfg.batch_size)
    if blind:
        return TrainingPlan("blind baseline", train, per_epoch, prefix="blind_", loss=MaskedCaptionLoss(),
                            callbacks=[ValidationLoss(model, data, cfg)], monitor="val_loss", mode="min",
                            early_stopping_min_delta=BLIND_MIN_IMPROVEMENT)
    return TrainingPlan(cfg.name, train, per_epoch, loss=MaskedCaptionLoss(),
                        callbacks=[ValidationCIDEr(model, data, cfg)], monitor="val_CIDEr")


class CaptioningTask(Task):
    name = "caption"

    def prepare_data(self, cfg, run, verbose):
        return builtin_data.prepared_data(cfg.data)

    def systems(self, cfg, data, run):
        vocab_size, counts = data.vocabulary().size, data.word_counts()
        fine_tune = None
        if cfg.train.self_critical_steps:
            def fine_tune(model, run, verbose):
                return self_critical.fine_tune(model, data, cfg, run, verbose)
        systems = [System(cfg.name, lambda: build_model(cfg, vocab_size, counts),
                          lambda model: training_plan(cfg, data, model), fine_tune=fine_tune)]
        if cfg.train.baselines:
            systems.append(System("blind", lambda: build_model(cfg, vocab_size, counts, blind=True),
                                  lambda model: training_plan(cfg, data, model, blind=True), "blind.keras"))
        return systems

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        model = trained[cfg.name].model
        world = load_world(cfg)
        index = None
        if "blind" in trained:  # the training images are embedded once for every split
            with profile.phase("nearest-neighbour index"):
                index = baselines.NearestNeighbourIndex(model.encoder, data.directory, cfg.data.image_size,
                                                        cfg.data.feature_dim)
        result = {"preset": cfg.name, "split": "test", "beam_size": cfg.decode.beam_size,
                  "data_dir": data.directory, "training": trained[cfg.name].training}
        if "blind" in trained:
            result["baselines"] = {"blind_training": {"best_val_CIDEr": None, **trained["blind"].training}}
        for split in test_splits(data):
            block = evaluate_split(cfg, data, trained, split, index, world, run)
            if split == "test":  # today's layout: the test split's blocks at the top level
                result["model"] = block["model"]
                result["baselines"] = {**result.get("baselines", {}), **block["baselines"]}
            else:
                result[split] = block
        visualize.training_curves(run.file("history.csv"), run.file("training_curves.png"), title=cfg.name)
        return result

    def export(self, cfg, data, trained, run):
        return export_run_model(trained[cfg.name].model, cfg.to_dict(), run.data, cfg.export.saved_models_dir,
                                cfg.export.name or cfg.name)

    def export_run(self, run, output, name, options):
        return export_run_model(registry.load_model(run.file("model.keras")), run.read_config(), run.data,
                                output, name, options.get("beam_size"), options.get("n_best"))


def test_splits(data: PreparedData) -> list[str]:
    """"test", and "test_novel" when the data has that split (`shapes.HeldOut`)."""
    examples = data.stats.get("examples", {})
    return ["test"] + (["test_novel"] if examples.get("test_novel") else [])


def load_world(cfg: ExperimentConfig) -> tuple[dict, list] | None:
    """(scenes by image id, held-out pairs) of the built-in world or of `task.scenes`; None for
    other data (grounding needs the scenes)."""
    path = builtin_data.scenes_path(cfg.data, cfg.task_args.get("scenes"))
    return grounding.load_scenes(path) if path else None


def evaluate_split(cfg: ExperimentConfig, data: PreparedData, trained: dict[str, Trained], split: str,
                   index: baselines.NearestNeighbourIndex | None, world, run: RunDirectory) -> dict:
    """The model and its baselines on one test split: pycocoevalcap metrics, perplexity and (on the
    built-in world) scene grounding per system; results, per-image scores and a caption grid."""
    blind = trained["blind"].model if index is not None else None
    rows, scores = evaluation.evaluate_systems(
        trained[cfg.name].model, data.vocabulary(), data.directory, split, cfg.decode, cfg.data.image_size,
        cfg.data.feature_dim, blind_model=blind, neighbours=index, world=world, name=cfg.name)
    block = {"split": split, "model": rows[cfg.name], "baselines": {}}
    if index is not None:
        block["baselines"] = {"blind": rows["blind LM"], "nearest_neighbour": rows["nearest neighbour"]}
    with profile.phase(f"{split}/files"):
        evaluation.write_split_files(run, data.directory, split, scores)
    evaluation.print_tables(rows, f"{split} split, beam {cfg.decode.beam_size}")
    return block


def export_run_model(model, config: dict, data: PreparedData, output: str, name: str,
                     beam_size: int | None = None, n_best: int | None = None) -> str:
    """Exports a trained captioner with its run's decoding settings (`config["decode"]`, overridden
    by `beam_size` / `n_best`) and vocabulary."""
    decode = DecodeConfig(**config.get("decode", {}))
    decode = dataclasses.replace(decode, **{k: v for k, v in (("beam_size", beam_size), ("n_best", n_best))
                                            if v is not None})
    if decode.n_best > decode.beam_size:  # a beam of k holds at most k hypotheses
        print(f"export: n_best {decode.n_best} > beam_size {decode.beam_size}; exporting {decode.beam_size}-best")
        decode = dataclasses.replace(decode, n_best=decode.beam_size)
    image_size = model.image_size or config.get("data", {}).get("image_size")
    return export_captioner(model, data.vocabulary_path, output, name, image_size, decode)
