"""Train a model: `python -m vcaption.train [--preset lrcn_2f] [--output runs/<preset>] [--set k=v ...]`.

Every preset names a task (captioning by default; see `TASK_TRAINERS`); this module is the
captioning trainer and the dispatcher.

With no arguments it builds the built-in shapes world (if absent), preprocesses it with the Beam job,
trains the `lrcn_2f` preset, evaluates it with beam search on the test split beside two baselines
(a blind language model and nearest-neighbour retrieval) and writes `<output>/metrics.json`.

Run again after a crash (even `kill -9`) and it resumes from the last checkpoint: training is cut
into checkpoint intervals of `train.checkpoint_every` steps (Keras "epochs" over a repeated
dataset), each ending with a checkpoint of the weights and optimizer state, so the step counter
continues where it stopped. The best interval by validation CIDEr-D is kept for the final
evaluation. TensorBoard logs go to `<output>/logs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Sequence

import numpy as np
import tensorflow as tf

from vcaption import config as config_lib
from vcaption import data, text
from vcaption.config import ExperimentConfig


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
def builtin_world(cfg: config_lib.DataConfig) -> str:
    """Generates the built-in shapes world (once); returns its directory (every format inside)."""
    from vcaption.datasets import shapes

    world = os.path.join(cfg.shapes_root, "world")
    if not os.path.exists(os.path.join(world, "dataset_shapes.json")):
        print(f"Generating the built-in shapes world ({cfg.shapes_images} images) in {world}")
        shapes.generate(world, num_images=cfg.shapes_images, num_videos=0, seed=cfg.shapes_seed)
    return world


# The built-in world's file that `beam_jobs.preprocess --format F` reads, by format.
BUILTIN_SOURCES = {"karpathy": "dataset_shapes.json", "coco": "annotations", "vqa": "vqa",
                   "vg": "visual_genome"}


def prepare_builtin_data(cfg: config_lib.DataConfig, fmt: str = "karpathy",
                         extra_args: Sequence[str] = ()) -> str:
    """Generates the shapes world and preprocesses it (once); returns the records directory.

    Args:
        cfg: where the world lives and how to preprocess it.
        fmt: which of the world's public formats to preprocess (`BUILTIN_SOURCES`): Karpathy
            captions (the default), COCO captions + instance boxes (the ranker), VQA (VQA), Visual
            Genome region descriptions (the object classifier).
        extra_args: more `beam_jobs.preprocess` flags; they name the records directory too, so
            different settings never share one.
    """
    from beam_jobs import preprocess

    world = builtin_world(cfg)
    tag = "".join(f"-{a.lstrip('-')}" for a in extra_args)
    prefix = "" if fmt == "karpathy" else f"{fmt}-"
    records_dir = os.path.join(cfg.shapes_root, f"records-{prefix}{cfg.image_size}{tag}")
    if not os.path.exists(os.path.join(records_dir, "stats.json")):
        print(f"Preprocessing its {fmt} files with beam_jobs.preprocess into {records_dir}")
        preprocess.run(["--format", fmt, "--input", os.path.join(world, BUILTIN_SOURCES[fmt]),
                        "--output", records_dir, "--image-size", str(cfg.image_size),
                        "--min-count", str(cfg.min_count), "--max-length", str(cfg.max_length),
                        *extra_args])
    return records_dir


def read_stats(data_dir: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(data_dir, "stats.json")) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Model and optimizer
# ---------------------------------------------------------------------------------------------
# `model.dtype` of presets that train in bf16 where it is fast (`automatic_dtype`).
AUTO_DTYPE = "auto"


def cpu_has_amx_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True on CPUs with AMX bf16 tiles (Intel Sapphire Rapids and later), from the kernel's flags."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def automatic_dtype() -> str | None:
    """What `model.dtype="auto"` means: mixed bf16 on a CPU host with AMX, where oneDNN runs bf16
    matrix products several times faster than fp32 (lrcn_2f steps ~25% faster); float32 (None)
    elsewhere: without AMX bf16 is emulated and slower, and GPUs get mixed precision only when
    asked (`--mixed-precision`: float16 there)."""
    if tf.config.list_physical_devices("GPU") or not cpu_has_amx_bf16():
        return None
    return "mixed_bfloat16"


def model_args(cfg: ExperimentConfig) -> dict:
    """The preset's `model_args` as constructor arguments: `dtype="auto"` resolved (`automatic_dtype`)."""
    args = dict(cfg.model_args)
    if args.get("dtype") == AUTO_DTYPE:
        args["dtype"] = automatic_dtype()
    return args


def build_model(cfg: ExperimentConfig, vocab_size: int, word_counts: np.ndarray | None,
                blind: bool = False):
    """The preset's model. `blind=True` gives the blind baseline: the same decoder whose visual
    input is a constant zero feature (`data.make_dataset(blind=True)`), so no CNN runs at all."""
    from vcaption import registry as models

    args = model_args(cfg)
    if blind:
        args.update(encoder="features", feature_dim=data.BLIND_FEATURE_DIM)
        args.pop("image_size", None)
    elif cfg.data.feature_dim:
        args.update(encoder="features", feature_dim=cfg.data.feature_dim)
        args.pop("image_size", None)
    model = models.build(cfg.model, vocab_size=vocab_size, **args)
    if word_counts is not None and cfg.model == "KarpathyMultimodalRNN":
        model.initialize_output_bias(word_counts)  # Karpathy & Fei-Fei §3.2: b_o = log frequency
    return model


def make_optimizer(cfg: config_lib.TrainConfig, total_steps: int):
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(total_steps, 1), alpha=0.1)
    # clipvalue: element-wise gradient clipping, as the papers clip each gradient component at 5.
    common = dict(learning_rate=schedule, clipvalue=cfg.clip_value or None,
                  weight_decay=cfg.weight_decay or None)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**common)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=cfg.momentum, **common)
    raise ValueError(f"train.optimizer must be adam, rmsprop or sgd, got {cfg.optimizer!r}")


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (worker 0 leads without a chief)."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = cluster.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster.get("cluster", {})


def worker_output(output: str) -> str:
    """Non-chief workers write their checkpoints to a scratch directory of their own, so that two
    processes never write the same files; the chief's directory is the run's."""
    if is_chief():
        return output
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return os.path.join(output, "workers", f"{task['type']}_{task['index']}")


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """tf.distribute strategy by name. multi_worker reads the cluster from TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs TF_CONFIG describing the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be default, mirrored or multi_worker, got {name!r}")


# ---------------------------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------------------------
def _validation_cider_callback(model_ref, vocab, data_dir, image_size, feature_dim, best_path, max_length):
    """Greedy-decodes the val split after every checkpoint interval; keeps the best by CIDEr-D."""
    import keras
    from pycocoevalcap.cider.cider import Cider

    from vcaption.config import DecodeConfig
    from vcaption.captioning.evaluation import generate_captions, make_generator

    dataset = data.make_dataset(data_dir, "val", "caption_eval", batch_size=100, image_size=image_size,
                                feature_dim=feature_dim)

    class ValidationCIDEr(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            # Traced once for the whole run, not once per checkpoint interval.
            self.generate = make_generator(model_ref, DecodeConfig(beam_size=1, max_length=max_length))
            self.best = -math.inf
            self.references = None  # normalized once: they are the same every interval
            if os.path.exists(best_path + ".json"):
                with open(best_path + ".json") as f:
                    self.best = json.load(f)["val_CIDEr"]

        def on_epoch_end(self, epoch, logs=None):
            candidates, references, _ = generate_captions(self.generate, vocab, dataset)
            # Both sides are already normalized by vcaption.text, so no PTB tokenizer (no Java) here.
            if self.references is None:
                keys = list(references)
                self.references = dict(zip(keys, text.normalized_caption_lists(
                    [references[k] for k in keys])))
            score, _ = Cider().compute_score(self.references, {k: [v] for k, v in candidates.items()})
            if logs is not None:
                logs["val_CIDEr"] = float(score)
            if score > self.best:
                self.best = float(score)
                model_ref.save_weights(best_path)
                with open(best_path + ".json", "w") as f:
                    json.dump({"val_CIDEr": self.best, "interval": epoch + 1}, f)

    return ValidationCIDEr()


def _validation_loss_callback(model_ref, data_dir, image_size, feature_dim):
    """Puts the blind model's teacher-forced validation loss (nats per token) in the interval's logs.

    Computed here rather than by `Model.fit(validation_data=...)` so that the multi-worker loop
    (`training_loop.fit_distributed`) gets it too: every worker scores the whole split with the same
    weights, so all of them stop at the same interval.
    """
    import keras

    from vcaption.captioning.evaluation import teacher_forced_nll, teacher_forced_perplexity

    dataset = data.make_dataset(data_dir, "val", "caption", batch_size=100, image_size=image_size,
                                feature_dim=feature_dim, training=False, blind=True)
    nll = teacher_forced_nll(model_ref)

    class ValidationLoss(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["val_loss"] = math.log(teacher_forced_perplexity(model_ref, dataset, nll))

    return ValidationLoss()


def checkpoint_intervals(total_steps: int, checkpoint_every: int) -> tuple[int, int]:
    """(intervals, steps per interval): equal intervals of at most `checkpoint_every` steps that
    add up to `total_steps` (up to rounding). Keras runs them as "epochs" over a repeated dataset."""
    intervals = math.ceil(total_steps / checkpoint_every)
    return intervals, math.ceil(total_steps / intervals)


def resumable_callbacks(output: str, prefix: str, callbacks) -> list:
    """`callbacks`, then the CSV history and, last, `BackupAndRestore` under `<output>/<prefix>backup`.

    Last, so that an interval's checkpoint is written after its log row and best weights: a crash
    in between then re-runs that interval instead of losing its record. Every task trainer uses
    this, so the same command resumes any of them after a crash.
    """
    import keras

    return [*callbacks,
            keras.callbacks.CSVLogger(os.path.join(output, f"{prefix}history.csv"), append=True),
            keras.callbacks.BackupAndRestore(os.path.join(output, f"{prefix}backup"), save_freq="epoch",
                                             delete_checkpoint=False)]


def optimizer_steps(model) -> int:
    """The optimizer's step counter (a MirroredVariable under tf.distribute, hence the conversion)."""
    return int(tf.convert_to_tensor(model.optimizer.iterations.value))


# The blind baseline stops at the first checkpoint interval that lowers validation loss by less
# than this (nats per token: 1% of perplexity). A language model of the captions alone converges
# long before the captioner: on the 6,000-image world its training loss moves 1.48 -> 1.10 -> 1.09
# over the first three intervals and 0.02 over the last four, so training it for the captioner's
# whole schedule would only spend time (about 40% of the default run's training).
BLIND_MIN_IMPROVEMENT = 0.01


def fit(model, cfg: ExperimentConfig, data_dir: str, output: str, stats: dict, *,
        blind: bool = False, verbose: int = 1) -> dict:
    """Trains `model` (resumable); returns {"steps", "seconds", "best_val_CIDEr"}.

    The captioner keeps its best interval by validation CIDEr-D; the blind baseline
    (`blind=True`) stops early once validation loss no longer improves (`BLIND_MIN_IMPROVEMENT`).
    """
    import keras

    from vcaption.losses import MaskedCaptionLoss

    tcfg = cfg.train
    os.makedirs(output, exist_ok=True)
    prefix = "blind_" if blind else ""
    best_path = os.path.join(output, f"{prefix}best.weights.h5")
    if blind and os.path.exists(best_path + ".json"):
        # Finished in an earlier run of the same command. Its backup may stop short of the last
        # interval (early stopping), so Keras alone would train it further.
        model.load_weights(best_path)
        with open(best_path + ".json") as f:
            return json.load(f)
    steps_per_epoch = math.ceil(stats["captions"]["train"] / tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs
    intervals, interval = checkpoint_intervals(total_steps, tcfg.checkpoint_every)
    feature_dim = cfg.data.feature_dim
    train = data.make_dataset(data_dir, "train", "caption", batch_size=tcfg.batch_size,
                              image_size=cfg.data.image_size, feature_dim=feature_dim,
                              seed=tcfg.seed, repeat=True, captions_per_image=tcfg.captions_per_image,
                              blind=blind)
    with model.distribute_strategy.scope():  # optimizer slots live where the model's variables do
        model.compile(optimizer=make_optimizer(tcfg, total_steps), loss=MaskedCaptionLoss())
    callbacks = [keras.callbacks.TensorBoard(os.path.join(output, "logs", "blind" if blind else "model"))]
    if blind:
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_loss", min_delta=BLIND_MIN_IMPROVEMENT, patience=1, restore_best_weights=True)
        callbacks += [_validation_loss_callback(model, data_dir, cfg.data.image_size, feature_dim),
                      early_stopping]
    else:
        vocab = text.Vocabulary(os.path.join(data_dir, "vocab.txt"))
        callbacks.insert(0, _validation_cider_callback(model, vocab, data_dir, cfg.data.image_size,
                                                       feature_dim, best_path, cfg.decode.max_length))
    callbacks = resumable_callbacks(output, prefix, callbacks)
    print(f"{'blind baseline' if blind else cfg.name}: {tcfg.epochs} epochs of {steps_per_epoch} steps "
          f"(batch {tcfg.batch_size}) = {intervals} checkpoint intervals of {interval} steps; "
          "Keras numbers them as epochs")
    metadata = os.path.join(output, f"{prefix}backup", "training_metadata.json")
    if os.path.exists(metadata):
        with open(metadata) as f:
            done = json.load(f)["epoch"]  # Keras records the number of completed intervals
        print(f"Resuming from the checkpoint after interval {done} (step {done * interval}) of {intervals}")
    start = time.perf_counter()
    if isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        from vcaption.runtime.distributed_loop import fit_distributed  # Model.fit fails here: keras#20585

        fit_distributed(model, train, intervals, interval, callbacks, verbose=verbose)
    else:
        model.fit(train, epochs=intervals, steps_per_epoch=interval, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start
    steps = optimizer_steps(model)  # before best weights (with their older optimizer state) load
    if blind:
        model.save_weights(best_path)
        result = {"steps": steps, "seconds": round(seconds, 1), "best_val_CIDEr": None,
                  "best_val_loss": round(float(early_stopping.best), 4), "stopped_early": steps < total_steps}
        with open(best_path + ".json", "w") as f:
            json.dump(result, f)
        return result
    if os.path.exists(best_path):
        model.load_weights(best_path)
    best = None
    if os.path.exists(best_path + ".json"):
        with open(best_path + ".json") as f:
            best = json.load(f)["val_CIDEr"]
    return {"steps": steps, "seconds": round(seconds, 1), "best_val_CIDEr": best}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
# Trainer of each task: a module whose `run(cfg, output, strategy_name, verbose) -> dict` trains,
# evaluates against the task's baselines and writes `<output>/metrics.json`. Captioning is this module.
TASK_TRAINERS = {
    "caption": __name__,
    "activity": "vcaption.video.task",
    "video_caption": "vcaption.video.task",
    "vqa": "vcaption.vqa.task",
    "retrieval": "vcaption.retrieval.task",
    "region_caption": "vcaption.retrieval.region_captioning",
    "objects": "vcaption.objects.task",
}


def run(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Runs the preset's task trainer; returns the metrics it wrote to `<output>/metrics.json`."""
    if cfg.task not in TASK_TRAINERS:
        raise ValueError(f"preset {cfg.name!r} has task {cfg.task!r}; known tasks: {sorted(TASK_TRAINERS)}")
    if cfg.task == "caption":
        return run_captioning(cfg, output, strategy_name, verbose)
    import importlib

    return importlib.import_module(TASK_TRAINERS[cfg.task]).run(cfg, output, strategy_name, verbose)


def run_captioning(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Trains, evaluates (model + baselines) and writes `<output>/metrics.json`; returns it."""
    import keras

    from vcaption import visualize
    from vcaption.captioning import baselines
    from vcaption.captioning import evaluation as evaluate

    # First: collective ops (multi_worker) must be configured before TensorFlow runs any op.
    strategy = distribution_strategy(strategy_name)
    keras.utils.set_random_seed(cfg.train.seed)
    chief = is_chief()
    output = worker_output(output)
    data_dir = cfg.data.data_dir or prepare_builtin_data(cfg.data)
    stats = read_stats(data_dir)
    vocab = text.Vocabulary(os.path.join(data_dir, "vocab.txt"))
    counts_path = os.path.join(data_dir, "vocab_counts.txt")
    word_counts = np.loadtxt(counts_path) if os.path.exists(counts_path) else None
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(cfg.to_dict() | {"data_dir": data_dir}, f, indent=1)

    with strategy.scope():
        model = build_model(cfg, vocab.size, word_counts)
    print(f"{cfg.name}: {model.count_params():,} parameters, vocabulary {vocab.size}, "
          f"{stats['captions']['train']} training captions, data {data_dir}")
    training = fit(model, cfg, data_dir, output, stats, verbose=verbose)
    blind_model = None
    if cfg.train.baselines:
        # Every worker trains the blind baseline too: its gradients are all-reduced across workers.
        with strategy.scope():
            blind_model = build_model(cfg, vocab.size, word_counts, blind=True)
        blind_training = fit(blind_model, cfg, data_dir, output, stats, blind=True, verbose=verbose)
    if not chief:
        print(f"worker done after {training['steps']} steps; the chief evaluates and writes metrics.json")
        return {"training": training}
    model.save(os.path.join(output, "model.keras"))

    image_size, feature_dim = cfg.data.image_size, cfg.data.feature_dim
    scores = evaluate.evaluate_captioner(model, vocab, data_dir, "test", cfg.decode, image_size, feature_dim)
    rows = {cfg.name: evaluate.public_metrics(scores)}
    result = {"preset": cfg.name, "split": "test", "beam_size": cfg.decode.beam_size,
              "data_dir": data_dir, "model": rows[cfg.name], "training": training, "baselines": {}}
    if blind_model is not None:
        result["baselines"]["blind_training"] = blind_training
        result["baselines"]["blind"] = evaluate.public_metrics(evaluate.evaluate_captioner(
            blind_model, vocab, data_dir, "test", cfg.decode, image_size, feature_dim, blind=True))
        blind_model.save(os.path.join(output, "blind.keras"))
        result["baselines"]["nearest_neighbour"] = baselines.nearest_neighbour_baseline(
            model, data_dir, "test", image_size, feature_dim)
        rows["blind LM"] = result["baselines"]["blind"]
        rows["nearest neighbour"] = result["baselines"]["nearest_neighbour"]

    if cfg.export.saved_models_dir:
        from vcaption import export

        decode = cfg.decode
        if decode.n_best > decode.beam_size:  # a beam of k holds at most k hypotheses
            print(f"export: n_best {decode.n_best} > beam_size {decode.beam_size}; exporting "
                  f"{decode.beam_size}-best")
            decode = dataclasses.replace(decode, n_best=decode.beam_size)
        result["export"] = export.export_captioner(
            model, os.path.join(data_dir, "vocab.txt"), cfg.export.saved_models_dir,
            cfg.export.name or cfg.name, image_size, decode)
        print(f"SavedModel -> {result['export']}")
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    evaluate.write_results(os.path.join(output, "results_test.json"), scores["candidates"])
    with open(os.path.join(output, "per_image_test.json"), "w") as f:
        json.dump(scores["per_image"], f, indent=1)
    visualize.caption_grid_from_records(data_dir, "test", scores["candidates"],
                                        os.path.join(output, "caption_grid_test.png"))
    visualize.training_curves(os.path.join(output, "history.csv"), os.path.join(output, "training_curves.png"),
                              title=cfg.name)
    print(evaluate.format_table(rows, f"test split, beam {cfg.decode.beam_size}"))
    print(f"metrics -> {os.path.join(output, 'metrics.json')}")
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m vcaption.train", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="lrcn_2f", choices=config_lib.preset_names())
    parser.add_argument("--output", default=None, help="run directory (default runs/<preset>)")
    parser.add_argument("--data", default=None, help="a beam_jobs.preprocess output directory "
                                                      "(default: the built-in shapes world)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--strategy", default="default", choices=["default", "mirrored", "multi_worker"])
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed_float16 on GPUs, mixed_bfloat16 on CPUs; --no-mixed-precision: "
                             "float32. Default: the preset's model.dtype (lrcn_2f: 'auto', mixed "
                             "bf16 on CPUs with AMX, float32 elsewhere); --set model.dtype=... wins")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any setting, e.g. --set model.hidden_units=1000")
    parser.add_argument("--quiet", action="store_true",
                        help="one line per checkpoint interval instead of a progress bar (the default "
                             "when the output is not a terminal)")
    return parser.parse_args(argv)


def config_from_args(args) -> ExperimentConfig:
    cfg = config_lib.get_preset(args.preset)
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.data_dir={args.data!r}")
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.mixed_precision is not None:  # before --set, so that --set wins
        policy = None  # --no-mixed-precision: float32, also over a preset's "auto"
        if args.mixed_precision:
            policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
        overrides.insert(0, f"model.dtype={policy!r}")
    return config_lib.apply_overrides(cfg, overrides)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(args)
    output = args.output or os.path.join("runs", cfg.name)
    # A live progress bar on a terminal; one line per checkpoint interval in logs and CI.
    verbose = 2 if args.quiet or not sys.stdout.isatty() else 1
    run(cfg, output, strategy_name=args.strategy, verbose=verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
