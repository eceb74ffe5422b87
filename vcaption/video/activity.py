"""Activity recognition (task "activity"): LRCN §4, Table 1.

    python -m vcaption.train --preset lrcn_activity [--output runs/lrcn_activity]

Data: the preset's `data.data_dir` (video records with flow images), or the built-in videos
(`video.builtin_videos`). Systems: the LRCN (CNN per frame -> LSTM -> per-frame softmax) on RGB
frames and on flow images, and the single-frame baselines of both (LRCN Table 1), each trained on
random clips of `clip_length` frames by the shared routine (`runtime.trainer.fit`). Test: clips of
`clip_length` frames every `clip_stride` frames whose frame probabilities are averaged (LRCN §4),
and the two streams' probabilities fused with weights (1/2, 1/2) and (1/3, 2/3); one table,
accuracy overall and per class (`metrics.json`, `table.md`). Export: the LRCN RGB and flow pair
(`video.export.export_activity`), also from the run directory alone (`export_run`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import registry
from vcaption.config import ExperimentConfig
from vcaption.runtime import devices
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained
from vcaption.runtime.trainer import TrainingPlan, steps_per_epoch
from vcaption.video import run_files
from vcaption.video.builtin_videos import prepared_videos, video_settings
from vcaption.video.export import export_activity
from vcaption.video.lrcn import clip_average_probabilities

FUSION_WEIGHTS = ((0.5, 0.5), (1 / 3, 2 / 3))  # (RGB, flow), LRCN §4 / Table 1
# The exported pair: RGB serves `serving_default` (and is the run's model.keras), flow the
# `flow` and `fusion` signatures.
RGB_SYSTEM, FLOW_SYSTEM = "LRCN RGB", "LRCN flow"
TEST_BATCH = 16


def activity_systems(model_args: Mapping) -> dict[str, dict]:
    """System name -> `LRCNActivityRecognizer` arguments: single-frame and LRCN, RGB and flow.

    Args:
        model_args: the preset's; "rgb_hidden_units" / "flow_hidden_units" size each stream's LSTM
            (LRCN §4: 256 and 1024), the rest is shared by all four systems.
    """
    args = dict(model_args)
    rgb_units, flow_units = args.pop("rgb_hidden_units", 256), args.pop("flow_hidden_units", 1024)
    return {
        "single-frame RGB": {**args, "stream": "frames", "single_frame": True},
        "single-frame flow": {**args, "stream": "flow", "single_frame": True},
        RGB_SYSTEM: {**args, "stream": "frames", "hidden_units": rgb_units},
        FLOW_SYSTEM: {**args, "stream": "flow", "hidden_units": flow_units},
    }


def build_recognizer(cfg: ExperimentConfig, args: Mapping, num_classes: int) -> keras.Model:
    return registry.build("LRCNActivityRecognizer", num_classes=num_classes, image_size=cfg.data.image_size,
                          **devices.resolve_dtype(args))


def recognizer_system(cfg: ExperimentConfig, data: PreparedData, name: str, args: Mapping,
                      num_classes: int) -> System:
    """One of `activity_systems` as the runtime trains it, saved as `<name>.keras`."""
    return System(name, build=lambda: build_recognizer(cfg, args, num_classes),
                  plan=lambda model: training_plan(cfg, data, name, args["stream"]),
                  keras_file=run_files.system_keras_file(name))


def random_clip(inputs: Mapping[str, tf.Tensor], clip_length: int, seed: int) -> dict:
    """The same random window of `clip_length` frames from every stream (frames and flow)."""
    count = tf.shape(next(iter(inputs.values())))[1]
    start = tf.random.uniform([], 0, tf.maximum(count - clip_length, 0) + 1, tf.int32, seed=seed)
    return {k: v[:, start:start + clip_length] for k, v in inputs.items()}


def training_plan(cfg: ExperimentConfig, data: PreparedData, system: str, stream: str) -> TrainingPlan:
    """How one recognizer trains: an epoch is a pass over the training videos, each seen as a
    random clip whose every frame carries the video's label (LRCN §4).

    Args:
        cfg: the preset (batch size, seed, `task_args` clip length).
        data: the video records.
        system: its name (printed; names its files in the run directory).
        stream: "frames" or "flow": what the recognizer reads.
    """
    video, tcfg = video_settings(cfg.task_args), cfg.train
    clip = video["clip_length"]
    videos = data_lib.make_dataset(data.directory, "train", "video", batch_size=tcfg.batch_size,
                                   image_size=cfg.data.image_size, num_frames=video["record_frames"],
                                   seed=tcfg.seed, repeat=True, flow=stream == "flow")

    def to_clip(inputs, targets):
        # 0..255 floats, as the encoders expect.
        clip_inputs = random_clip({stream: tf.cast(inputs[stream], tf.float32)}, clip, tcfg.seed)
        # Every frame of the clip carries the video's label: one loss term per frame (LRCN §4).
        per_frame = tf.repeat(targets["label"][:, tf.newaxis], clip, axis=1)  # [B, clip]
        return clip_inputs, per_frame

    return TrainingPlan(system, videos.map(to_clip, num_parallel_calls=tf.data.AUTOTUNE),
                        steps_per_epoch(data.stats["examples"]["train"], tcfg.batch_size),
                        prefix=run_files.system_prefix(system),
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def video_probabilities(models: Mapping[str, keras.Model], dataset: tf.data.Dataset, clip_length: int,
                        clip_stride: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({system: probabilities [videos, C]}, labels [videos]) with the LRCN §4 test protocol, every
    system on the same pass over `dataset` (each video is decoded once for all of them)."""

    def clip_averager(model):
        @tf.function(reduce_retracing=True)
        def predict(frames):
            return clip_average_probabilities(lambda clips: model({model.stream: clips}, training=False),
                                              frames, clip_length, clip_stride)
        return predict

    predictors = {name: clip_averager(model) for name, model in models.items()}
    probabilities, labels = {name: [] for name in models}, []
    for inputs, targets in dataset:
        for name, model in models.items():
            probabilities[name].append(predictors[name](tf.cast(inputs[model.stream], tf.float32)).numpy())
        labels.append(targets["label"].numpy())
    return {name: np.concatenate(p) for name, p in probabilities.items()}, np.concatenate(labels)


def accuracy_row(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """{"accuracy": overall, <class>: accuracy on that class's videos (NaN without any)}."""
    predicted = probabilities.argmax(axis=1)
    row = {"accuracy": float(np.mean(predicted == labels))}
    for index, name in enumerate(class_names):
        mask = labels == index
        row[name] = float(np.mean(predicted[mask] == index)) if mask.any() else float("nan")
    return row


def fusion_rows(probabilities: Mapping[str, np.ndarray], labels: np.ndarray,
                class_names: Sequence[str]) -> dict:
    """Late fusion of each kind's RGB and flow probabilities, w_rgb·P_rgb + w_flow·P_flow, for
    every `FUSION_WEIGHTS` (LRCN Table 1)."""
    rows = {}
    for kind in ("single-frame", "LRCN"):
        for w_rgb, w_flow in FUSION_WEIGHTS:
            fused = w_rgb * probabilities[f"{kind} RGB"] + w_flow * probabilities[f"{kind} flow"]
            rows[f"{kind} fusion ({w_rgb:.2g}/{w_flow:.2g})"] = accuracy_row(fused, labels, class_names)
    return rows


def format_activity_table(rows: Mapping[str, Mapping[str, float]], class_names: Sequence[str],
                          title: str) -> str:
    """A Markdown table: one row per system, accuracy % overall and per class."""
    columns = ["accuracy", *class_names]
    header = f"| system | {' | '.join(columns)} |"
    lines = [title, "", header, "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" for c in columns) + " |")
    return "\n".join(lines)


class ActivityTask(Task):
    """The four `activity_systems` trained, tested with the LRCN §4 protocol and fused (Table 1),
    the LRCN RGB and flow pair exported."""

    name = "activity"

    def prepare_data(self, cfg, run, verbose):
        return prepared_videos(cfg)

    def systems(self, cfg, data, run):
        num_classes = len(data.labels())
        return [recognizer_system(cfg, data, name, args, num_classes)
                for name, args in activity_systems(cfg.model_args).items()]

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        video, labels = video_settings(cfg.task_args), data.labels()
        clip, stride = video["clip_length"], video["clip_stride"]
        test = data_lib.make_dataset(data.directory, "test", "video", batch_size=TEST_BATCH,
                                     image_size=cfg.data.image_size, num_frames=video["record_frames"],
                                     flow=True)
        probabilities, truth = video_probabilities({name: t.model for name, t in trained.items()}, test,
                                                   clip, stride)
        rows = {name: accuracy_row(p, truth, labels) for name, p in probabilities.items()}
        rows.update(fusion_rows(probabilities, truth, labels))
        table = format_activity_table(
            rows, labels, f"Activity recognition, test split ({len(truth)} videos, clips of {clip} "
                          f"frames, stride {stride}), accuracy % overall and per class")
        print(table)
        run_files.write_table(run, table)
        run_files.keep_as_run_model(run, RGB_SYSTEM)
        return {"task": self.name, "preset": cfg.name, "data_dir": data.directory, "labels": labels,
                "test_videos": int(len(truth)), "rows": rows,
                "training": {name: t.training for name, t in trained.items()}}

    def export(self, cfg, data, trained, run):
        # From the saved files, exactly as `python -m vcaption.export --run` exports the run later.
        return self.export_run(run, cfg.export.saved_models_dir, cfg.export.name or cfg.name, {})

    def export_run(self, run, output, name, options):
        """The LRCN RGB (model.keras) and flow pair with the run's labels and test-time clips."""
        video = video_settings(run.read_config().get("task_args", {}))
        rgb = registry.load_model(run.file(run_files.RUN_MODEL))
        flow = registry.load_model(run.file(run_files.system_keras_file(FLOW_SYSTEM)))
        return export_activity(rgb, flow, run.data.labels(), output, name, video["clip_length"],
                               video["clip_stride"])
