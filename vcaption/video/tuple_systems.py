"""The LRCN §6 systems of the video description task: the tuple predictor, the decoders over its
output, their data and their tables (`vcaption.video.semantic_tuple` holds the models).

A description preset names them among its `task_args["systems"]` with
`{"model": "SemanticTupleCaptioner", "tuple_input": ...}`; the task then trains the tuple
predictor first (`task_args["tuple_predictor"]`: its `TuplePredictor` arguments), saves it as
`RUN/tuple_predictor.keras`, and gives every frame-reading decoder a frozen copy of it.

Each clip's true tuple comes from the world's MSR-VTT file (`videodatainfo.json`, a "tuple" per
video: {slot: value} for every `TUPLE_SLOTS`), the built-in world's or `task_args["tuples"]`.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import records, registry
from vcaption.config import ExperimentConfig
from vcaption.datasets.shapes import TUPLE_SLOTS, TUPLE_VALUES
from vcaption.losses import MaskedCaptionLoss
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System
from vcaption.runtime.trainer import TrainingPlan, steps_per_epoch
from vcaption.video import run_files
from vcaption.video.builtin_videos import builtin_video_world, video_settings

TUPLE_MODEL = "SemanticTupleCaptioner"
PREDICTOR_SYSTEM = "tuple predictor"
SLOT_SIZES = tuple(len(TUPLE_VALUES[slot]) for slot in TUPLE_SLOTS)
PREDICTOR_DEFAULTS = {"hidden_units": 128, "cnn_features": 128, "cnn_filters": (16, 32, 64),
                      "global_pool": True, "dropout": 0.3}
EVAL_BATCH = 16
# LRCN Table 7's "input" column: what each decoder reads.
DECODER_INPUTS = {"words": "argmax tuple words, LSTM encoder (a)", "argmax": "argmax tuple, one-hot (b)",
                  "probabilities": "slot probabilities (c)", "oracle": "true tuple, one-hot (oracle)"}


def is_tuple_system(spec: Mapping) -> bool:
    return spec.get("model") == TUPLE_MODEL


def tuples_path(cfg: ExperimentConfig) -> str:
    """The MSR-VTT file holding each clip's tuple: `task_args["tuples"]`, else the built-in world's."""
    return cfg.task_args.get("tuples") or os.path.join(builtin_video_world(cfg), "msrvtt",
                                                       "videodatainfo.json")


def read_tuples(path: str) -> dict[str, list[int]]:
    """video id -> each slot's value index (`TUPLE_VALUES`), from an MSR-VTT file's "tuple"s."""
    with tf.io.gfile.GFile(path) as f:
        videos = json.load(f)["videos"]
    tuples = {}
    for video in videos:
        semantic = video.get("tuple")
        if not isinstance(semantic, dict) or set(semantic) != set(TUPLE_SLOTS):
            raise ValueError(f"{path}: video {video.get('video_id')!r} has no semantic tuple with the "
                             f"slots {TUPLE_SLOTS} (got {semantic!r}); the §6 systems need one per clip")
        unknown = [s for s in TUPLE_SLOTS if semantic[s] not in TUPLE_VALUES[s]]
        if unknown:
            raise ValueError(f"{path}: video {video['video_id']!r}: unknown tuple value(s) "
                             + ", ".join(f"{s}={semantic[s]!r}" for s in unknown))
        tuples[video["video_id"]] = [TUPLE_VALUES[s].index(semantic[s]) for s in TUPLE_SLOTS]
    return tuples


def one_hot_tuples(indices: np.ndarray) -> np.ndarray:
    """int `[N, slots]` -> float32 `[N, ΣK]`: each slot's one-hot, side by side."""
    return np.concatenate([np.eye(k, dtype=np.float32)[indices[:, s]] for s, k in enumerate(SLOT_SIZES)],
                          axis=-1)


def clip_dataset(data: PreparedData, split: str, tuples: Mapping[str, list[int]], image_size: int,
                 num_frames: int, training: bool, batch_size: int, seed: int | None = None):
    """Video records with their tuples: `{"image_id", "frames" float32 [F, S, S, 3], "tuple" int32
    [slots], "one_hot" [ΣK], "references"}` (evaluation, ragged batches, records in order) or with
    `"caption_in"`, `"caption_out"` of a random reference (training: shuffled, repeated, padded)."""
    ids = sorted(tuples)
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(ids), tf.range(len(ids), dtype=tf.int64)), default_value=-1)
    indices = np.array([tuples[i] for i in ids], np.int32)  # [videos, slots]
    index_table, one_hot_table = tf.constant(indices), tf.constant(one_hot_tuples(indices))

    def to_element(serialized):
        parsed = records.parse_video_example(serialized)
        row = table.lookup(parsed["video_id"])
        known = tf.debugging.assert_non_negative(row, message="a video record without a semantic tuple")
        with tf.control_dependencies([known]):
            row = tf.identity(row)
        frames = tf.ensure_shape(data_lib.decode_clip(parsed["frames_jpeg"], image_size, num_frames),
                                 [num_frames, image_size, image_size, 3])
        element = {"image_id": parsed["video_id"], "frames": tf.cast(frames, tf.float32),  # 0..255
                   "tuple": tf.gather(index_table, row), "one_hot": tf.gather(one_hot_table, row)}
        if not training:
            return {**element, "references": parsed["captions"]}
        caption_ids = tf.cast(parsed["caption_ids"], tf.int32)
        caption = caption_ids[tf.random.uniform([], 0, caption_ids.nrows(out_type=tf.int64), tf.int64,
                                                seed=seed)]
        return {**element, "caption_in": caption[:-1], "caption_out": caption[1:]}

    serialized = data_lib.read_records(data.split_pattern(split), shuffle=training, seed=seed)
    elements = serialized.map(to_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if not training:
        return elements.ragged_batch(batch_size)
    elements = elements.shuffle(1024, seed=seed).repeat()
    return elements.padded_batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


def predictor_args(cfg: ExperimentConfig) -> dict:
    return {**PREDICTOR_DEFAULTS, **cfg.task_args.get("tuple_predictor", {})}


def build_predictor(cfg: ExperimentConfig):
    return registry.build("TuplePredictor", slot_sizes=SLOT_SIZES, image_size=cfg.data.image_size,
                          num_frames=video_settings(cfg.task_args)["record_frames"], **predictor_args(cfg))


def _clips(cfg, data, tuples, split="train"):
    video = video_settings(cfg.task_args)
    return clip_dataset(data, split, tuples, cfg.data.image_size, video["record_frames"], True,
                        cfg.train.batch_size, cfg.train.seed)


def predictor_system(cfg: ExperimentConfig, data: PreparedData, tuples: Mapping) -> System:
    """The tuple predictor, trained on every training clip's true tuple (the sum of the slots'
    cross-entropies), saved as `tuple_predictor.keras`."""
    from vcaption.video.semantic_tuple import SlotCrossEntropy

    def plan(model):
        clips = _clips(cfg, data, tuples).map(lambda e: ({"frames": e["frames"]}, e["tuple"]))
        return TrainingPlan(PREDICTOR_SYSTEM, clips,
                            steps_per_epoch(data.stats["examples"]["train"], cfg.train.batch_size),
                            prefix=run_files.system_prefix(PREDICTOR_SYSTEM), loss=SlotCrossEntropy(SLOT_SIZES))

    return System(PREDICTOR_SYSTEM, build=lambda: build_predictor(cfg), plan=plan,
                  keras_file=run_files.system_keras_file(PREDICTOR_SYSTEM))


def captioner_system(cfg: ExperimentConfig, data: PreparedData, run: RunDirectory, name: str,
                     spec: Mapping, vocab_size: int, tuples: Mapping) -> System:
    """A §6 decoder: built with a frozen copy of the trained predictor (saved before it, in the
    run), trained with teacher forcing on a random reference of each training clip."""
    spec = {k: v for k, v in spec.items() if k != "model"}
    oracle = spec.get("tuple_input") == "oracle"

    def build():
        predictor = build_predictor(cfg)
        model = registry.build(TUPLE_MODEL, vocab_size=vocab_size, slot_sizes=SLOT_SIZES,
                               num_frames=video_settings(cfg.task_args)["record_frames"],
                               image_size=cfg.data.image_size, predictor=predictor.architecture(), **spec)
        if not oracle:
            model.load_predictor(registry.load_model(run.file(run_files.system_keras_file(PREDICTOR_SYSTEM))))
        return model

    def plan(model):
        visual = "one_hot" if oracle else "frames"
        pairs = _clips(cfg, data, tuples).map(lambda e: ({"visual": e[visual], "caption_in": e["caption_in"]},
                                                         e["caption_out"]))
        return TrainingPlan(name, pairs, steps_per_epoch(data.stats["examples"]["train"], cfg.train.batch_size),
                            prefix=run_files.system_prefix(name), loss=MaskedCaptionLoss())

    return System(name, build=build, plan=plan, keras_file=run_files.system_keras_file(name))


def oracle_eval_dataset(cfg: ExperimentConfig, data: PreparedData, tuples: Mapping, split: str = "test"):
    """The evaluation elements of `captioning.evaluation.generate_captions` with the true tuple
    (one-hot) as "visual"."""
    video = video_settings(cfg.task_args)
    clips = clip_dataset(data, split, tuples, cfg.data.image_size, video["record_frames"], False, EVAL_BATCH)
    return clips.map(lambda e: {"image_id": e["image_id"], "visual": e["one_hot"],
                                "references": e["references"]})


def predictor_rows(cfg: ExperimentConfig, data: PreparedData, predictor, tuples: Mapping,
                   split: str = "test") -> dict[str, dict[str, float]]:
    """{"tuple predictor": accuracy per slot and of the whole tuple, "majority class": the same for
    predicting each slot's most common training value}, on `split`."""
    video = video_settings(cfg.task_args)
    clips = clip_dataset(data, split, tuples, cfg.data.image_size, video["record_frames"], False, EVAL_BATCH)
    predicted, truth = [], []
    for element in clips:
        logits = predictor({"frames": element["frames"]}, training=False).numpy()  # [B, ΣK]
        starts = np.cumsum((0,) + SLOT_SIZES[:-1])
        predicted.append(np.stack([logits[:, a:a + k].argmax(-1) for a, k in zip(starts, SLOT_SIZES)], 1))
        truth.append(element["tuple"].numpy())
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)  # [videos, slots]
    train_ids = set(_split_ids(data, "train"))
    train = np.array([tuples[i] for i in sorted(train_ids)])
    majority = np.array([np.bincount(train[:, s], minlength=k).argmax() for s, k in enumerate(SLOT_SIZES)])

    def row(guess):
        correct = guess == truth  # [videos, slots]
        return {**{slot: float(correct[:, s].mean()) for s, slot in enumerate(TUPLE_SLOTS)},
                "tuple": float(correct.all(axis=1).mean())}

    return {PREDICTOR_SYSTEM: row(predicted), "majority class": row(np.broadcast_to(majority, truth.shape))}


def _split_ids(data: PreparedData, split: str) -> list[str]:
    serialized = data_lib.read_records(data.split_pattern(split), shuffle=False)
    return [records.parse_video_example(s)["video_id"].numpy().decode() for s in serialized]


def format_predictor_table(rows: Mapping[str, Mapping[str, float]], videos: int) -> str:
    columns = [*TUPLE_SLOTS, "tuple"]
    lines = [f"Semantic tuple prediction, test split ({videos} videos), accuracy % per slot and of "
             "the whole tuple", "", f"| predictor | {' | '.join(columns)} |", "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" for c in columns) + " |")
    return "\n".join(lines)


def format_table7(rows: Mapping[str, Mapping[str, float]], specs: Mapping[str, Mapping], title: str) -> str:
    """LRCN Table 7's layout: system, what its decoder reads, BLEU-4, METEOR (%)."""
    lines = [title, "", "| system | decoder input | BLEU-4 | METEOR |", "|---|---|---|---|"]
    for name, row in rows.items():
        spec = specs[name]
        reads = DECODER_INPUTS[spec["tuple_input"]] if is_tuple_system(spec) else "frames"
        lines.append(f"| {name} | {reads} | {100 * row['Bleu_4']:.1f} | {100 * row['METEOR']:.1f} |")
    return "\n".join(lines)
