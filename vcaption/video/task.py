"""Video trainer: activity recognition (LRCN §4) and video description (LRCN §6, S2VT, mean-pool).

    python -m vcaption.train --preset lrcn_activity   [--output runs/lrcn_activity]
    python -m vcaption.train --preset video_description [--output runs/video_description]

Two tasks (`vcaption.train.TASK_TRAINERS`), one data path: the built-in shapes world's videos are
written as MSR-VTT (`msrvtt/videodatainfo.json` + `videos/*.avi`), read by the MSR-VTT reader and
preprocessed by `beam_jobs.preprocess --format msvd --optical-flow` into video records with frames
and flow images (LRCN §4), then read by `vcaption.data.make_dataset(task="video")`.

- task "activity": trains the LRCN (CNN per frame -> LSTM -> per-frame softmax) on RGB frames and
  on flow images, and the single-frame baselines of both (LRCN Table 1), on random 16-frame clips;
  tests on clips of 16 frames with stride 8 whose frame probabilities are averaged, and fuses the
  two streams' probabilities with weights (1/2, 1/2) and (1/3, 2/3). One table: accuracy overall
  and per class.
- task "video_caption": trains each system of `task_args["systems"]` (default: mean-pool, S2VT,
  LRCN decoder) with teacher forcing and scores beam-search captions of the test split with
  pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr-D); one table.

Both write `<output>/metrics.json` (and `table.md`), save each model as `<name>.keras`, and export
the best system with `vcaption.video.export` under `cfg.export.saved_models_dir` unless it is "".
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from vcaption import data, records
from vcaption.config import ExperimentConfig

# Defaults of the built-in video data (task_args override them): small on purpose, for a 2-core CPU.
# "frames" are generated per video; the records keep every `frame_stride`-th of them.
VIDEO_DEFAULTS = {"videos": 480, "frames": 24, "video_size": 32, "clip_length": 16, "clip_stride": 8,
                  "flow_scale": 16.0, "frame_stride": 1}
FUSION_WEIGHTS = ((0.5, 0.5), (1 / 3, 2 / 3))  # (RGB, flow), LRCN §4 / Table 1


def video_settings(cfg: ExperimentConfig) -> dict:
    """VIDEO_DEFAULTS with the preset's task_args, plus "record_frames": frames kept per record."""
    video = {**VIDEO_DEFAULTS, **{k: v for k, v in cfg.task_args.items() if k in VIDEO_DEFAULTS}}
    return {**video, "record_frames": math.ceil(video["frames"] / video["frame_stride"])}


def prepare_video_data(cfg: ExperimentConfig) -> str:
    """Generates the shapes world's videos and preprocesses them (once); returns the records dir."""
    from beam_jobs import preprocess
    from vcaption.datasets import shapes

    video = video_settings(cfg)
    tag = f"videos{video['videos']}-f{video['frames']}-s{video['video_size']}"
    world = os.path.join(cfg.data.shapes_root, f"world-{tag}")
    records_dir = os.path.join(cfg.data.shapes_root,
                               f"records-{tag}-stride{video['frame_stride']}-{cfg.data.image_size}-flow")
    info = os.path.join(world, "msrvtt", "videodatainfo.json")
    if not os.path.exists(info):
        print(f"Generating {video['videos']} built-in videos in {world}")
        shapes.generate(world, num_images=12, num_videos=video["videos"], seed=cfg.data.shapes_seed,
                        image_size=32, video_size=video["video_size"], num_frames=video["frames"])
    if not os.path.exists(os.path.join(records_dir, "stats.json")):
        print(f"Preprocessing them with beam_jobs.preprocess --optical-flow into {records_dir}")
        preprocess.run(["--format", "msvd", "--input", info, "--output", records_dir,
                        "--image-size", str(cfg.data.image_size), "--min-count", str(cfg.data.min_count),
                        "--max-length", str(cfg.data.max_length), "--max-frames", str(video["record_frames"]),
                        "--frame-stride", str(video["frame_stride"]),
                        "--optical-flow", "--flow-scale", str(video["flow_scale"]), "--num-shards", "2"])
    return records_dir


def _float_frames(inputs: dict) -> dict:
    return {k: tf.cast(v, tf.float32) for k, v in inputs.items()}  # 0..255, as the encoders expect


def _random_clip(inputs: dict, clip_length: int, seed: int):
    """The same random window of `clip_length` frames from every stream (frames and flow)."""
    count = tf.shape(next(iter(inputs.values())))[1]
    start = tf.random.uniform([], 0, tf.maximum(count - clip_length, 0) + 1, tf.int32, seed=seed)
    return {k: v[:, start:start + clip_length] for k, v in inputs.items()}


def _fit(model, dataset, loss, cfg: ExperimentConfig, steps_per_epoch: int, output: str, name: str,
         verbose: int):
    """Trains and saves `<output>/<name>.keras`; returns (model, {"steps", "seconds"}). A system whose
    `.keras` is already there (a rerun after a crash) is loaded instead of trained again."""
    import keras

    from vcaption.train import make_optimizer

    path, info_path = os.path.join(output, f"{name}.keras"), os.path.join(output, f"{name}.json")
    if os.path.exists(path):
        print(f"{name}: loading the trained {path}")
        info = json.load(open(info_path)) if os.path.exists(info_path) else {"resumed": True}
        return keras.saving.load_model(path, compile=False), info
    total = steps_per_epoch * cfg.train.epochs
    model.compile(optimizer=make_optimizer(cfg.train, total), loss=loss)
    start = time.perf_counter()
    model.fit(dataset, epochs=cfg.train.epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
              callbacks=[keras.callbacks.CSVLogger(os.path.join(output, f"{name}_history.csv"))])
    info = {"steps": total, "seconds": round(time.perf_counter() - start, 1)}
    model.save(path)
    with open(info_path, "w") as f:
        json.dump(info, f)
    return model, info


# ---------------------------------------------------------------------------------------------
# Activity recognition
# ---------------------------------------------------------------------------------------------
def activity_systems(cfg: ExperimentConfig) -> dict[str, dict]:
    """name -> LRCNActivityRecognizer arguments: single-frame and LRCN, RGB and flow."""
    args = dict(cfg.model_args)
    rgb_units, flow_units = args.pop("rgb_hidden_units", 256), args.pop("flow_hidden_units", 1024)
    return {
        "single-frame RGB": {**args, "stream": "frames", "single_frame": True},
        "single-frame flow": {**args, "stream": "flow", "single_frame": True},
        "LRCN RGB": {**args, "stream": "frames", "hidden_units": rgb_units},
        "LRCN flow": {**args, "stream": "flow", "hidden_units": flow_units},
    }


def _file_name(system: str) -> str:
    """"mean-pool (NAACL 2015)" -> "mean_pool_naacl_2015"."""
    return "_".join("".join(c if c.isalnum() else " " for c in system.lower()).split())


def video_probabilities(model, dataset, clip_length: int, clip_stride: int):
    """(probabilities [videos, C], labels [videos]) with the LRCN §4 test protocol."""
    from vcaption.video.lrcn import clip_average_probabilities

    stream = model.stream

    @tf.function(reduce_retracing=True)
    def predict(frames):
        return clip_average_probabilities(lambda clips: model({stream: clips}, training=False),
                                          frames, clip_length, clip_stride)

    probabilities, labels = [], []
    for inputs, targets in dataset:
        probabilities.append(predict(tf.cast(inputs[stream], tf.float32)).numpy())
        labels.append(targets["label"].numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


def accuracy_row(probabilities: np.ndarray, labels: np.ndarray, class_names) -> dict:
    predicted = probabilities.argmax(axis=1)
    row = {"accuracy": float(np.mean(predicted == labels))}
    for index, name in enumerate(class_names):
        mask = labels == index
        row[name] = float(np.mean(predicted[mask] == index)) if mask.any() else float("nan")
    return row


def format_activity_table(rows: dict, class_names, title: str) -> str:
    columns = ["accuracy", *class_names]
    header = f"| system | {' | '.join(columns)} |"
    lines = [title, "", header, "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" for c in columns) + " |")
    return "\n".join(lines)


def run_activity(cfg: ExperimentConfig, output: str, verbose: int) -> dict:
    import keras

    from vcaption import registry as models

    video = video_settings(cfg)
    data_dir = cfg.data.data_dir or prepare_video_data(cfg)
    labels = open(os.path.join(data_dir, "labels.txt")).read().split("\n")[:-1]
    stats = json.load(open(os.path.join(data_dir, "stats.json")))
    size, frames, clip = cfg.data.image_size, video["record_frames"], video["clip_length"]
    steps_per_epoch = math.ceil(stats["examples"]["train"] / cfg.train.batch_size)

    def training_set(stream):
        dataset = data.make_dataset(data_dir, "train", "video", batch_size=cfg.train.batch_size,
                                    image_size=size, num_frames=frames, seed=cfg.train.seed,
                                    repeat=True, flow=stream == "flow")

        def to_clip(inputs, targets):
            clip_inputs = _random_clip(_float_frames({stream: inputs[stream]}), clip, cfg.train.seed)
            # Every frame of the clip carries the video's label: one loss term per step (LRCN §4).
            per_frame = tf.repeat(targets["label"][:, tf.newaxis], clip, axis=1)  # [B, clip]
            return clip_inputs, per_frame

        return dataset.map(to_clip, num_parallel_calls=tf.data.AUTOTUNE)

    test = data.make_dataset(data_dir, "test", "video", batch_size=16, image_size=size,
                             num_frames=frames, flow=True)
    rows, training, probabilities = {}, {}, {}
    for name, args in activity_systems(cfg).items():
        keras.utils.set_random_seed(cfg.train.seed)
        model = models.build("LRCNActivityRecognizer", num_classes=len(labels), image_size=size,
                             **args)
        print(f"{name}: {model.count_params():,} parameters")
        model, training[name] = _fit(model, training_set(args["stream"]),
                              keras.losses.SparseCategoricalCrossentropy(from_logits=True), cfg,
                              steps_per_epoch, output, _file_name(name), verbose)
        probabilities[name], truth = video_probabilities(model, test, clip, video["clip_stride"])
        rows[name] = accuracy_row(probabilities[name], truth, labels)
    for kind in ("single-frame", "LRCN"):
        for w_rgb, w_flow in FUSION_WEIGHTS:
            fused = w_rgb * probabilities[f"{kind} RGB"] + w_flow * probabilities[f"{kind} flow"]
            rows[f"{kind} fusion ({w_rgb:.2g}/{w_flow:.2g})"] = accuracy_row(fused, truth, labels)
    table = format_activity_table(
        rows, labels, f"Activity recognition, test split ({len(truth)} videos, clips of {clip} "
                      f"frames, stride {video['clip_stride']}), accuracy % overall and per class")
    print(table)
    result = {"task": "activity", "preset": cfg.name, "data_dir": data_dir, "labels": labels,
              "test_videos": int(len(truth)), "rows": rows, "training": training}
    if cfg.export.saved_models_dir:
        from vcaption.video import export as export_video

        result["export"] = export_video.export_activity(
            keras.saving.load_model(os.path.join(output, "lrcn_rgb.keras"), compile=False),
            keras.saving.load_model(os.path.join(output, "lrcn_flow.keras"), compile=False),
            labels, cfg.export.saved_models_dir, cfg.export.name or cfg.name, video["clip_length"],
            video["clip_stride"])
    _write(output, result, table)
    return result


# ---------------------------------------------------------------------------------------------
# Video description
# ---------------------------------------------------------------------------------------------
def caption_eval_dataset(data_dir: str, split: str, image_size: int, num_frames: int,
                         batch_size: int = 16) -> tf.data.Dataset:
    """`{"image_id": video ids, "visual": float32 frames [B, T, S, S, 3], "references": ragged}`, the
    element structure `vcaption.captioning.evaluation.generate_captions` reads."""

    def to_element(serialized):
        parsed = records.parse_video_example(serialized)
        frames = tf.ensure_shape(data.decode_clip(parsed["frames_jpeg"], image_size, num_frames),
                                 [num_frames, image_size, image_size, 3])
        return {"image_id": parsed["video_id"], "visual": tf.cast(frames, tf.float32),
                "references": parsed["captions"]}

    serialized = data.read_records(data.split_pattern(data_dir, split), shuffle=False)
    return serialized.map(to_element, num_parallel_calls=tf.data.AUTOTUNE).ragged_batch(batch_size)


def caption_systems(cfg: ExperimentConfig) -> dict[str, dict]:
    """name -> {"model": class name, **constructor arguments}; default: the preset's model."""
    systems = cfg.task_args.get("systems")
    if systems:
        return {name: dict(spec) for name, spec in systems.items()}
    return {cfg.name: {"model": cfg.model, **cfg.model_args}}


def run_video_caption(cfg: ExperimentConfig, output: str, verbose: int) -> dict:
    import keras

    from vcaption import text
    from vcaption.captioning import evaluation as evaluate
    from vcaption import registry as models
    from vcaption.losses import MaskedCaptionLoss
    from vcaption.metrics import caption as caption_metrics

    video = video_settings(cfg)
    data_dir = cfg.data.data_dir or prepare_video_data(cfg)
    vocab = text.Vocabulary(os.path.join(data_dir, "vocab.txt"))
    stats = json.load(open(os.path.join(data_dir, "stats.json")))
    size, frames = cfg.data.image_size, video["record_frames"]
    steps_per_epoch = math.ceil(stats["examples"]["train"] / cfg.train.batch_size)
    train = data.make_dataset(data_dir, "train", "video", batch_size=cfg.train.batch_size,
                              image_size=size, num_frames=frames, seed=cfg.train.seed, repeat=True)
    # A different reference description of each video every epoch (the dataset picks one at random).
    train = train.map(lambda x, y: ({"visual": tf.cast(x["frames"], tf.float32),
                                     "caption_in": y["caption_in"]}, y["caption_out"]))
    test = caption_eval_dataset(data_dir, "test", size, frames)
    decode = cfg.decode
    rows, training, candidates_by_system = {}, {}, {}
    for name, spec in caption_systems(cfg).items():
        keras.utils.set_random_seed(cfg.train.seed)
        spec = dict(spec)
        model = models.build(spec.pop("model"), vocab_size=vocab.size, num_frames=frames,
                             image_size=size, **spec)
        print(f"{name}: {model.count_params():,} parameters, vocabulary {vocab.size}")
        model, training[name] = _fit(model, train, MaskedCaptionLoss(), cfg, steps_per_epoch, output,
                                     _file_name(name), verbose)
        start = time.perf_counter()
        candidates, references, _ = evaluate.generate_captions(
            evaluate.make_generator(model, decode), vocab, test)
        scores = caption_metrics.score_captions(references, candidates, spice=False)
        scores["decode_seconds"] = round(time.perf_counter() - start, 1)
        rows[name] = scores
        candidates_by_system[name] = candidates
    table = evaluate.format_table(
        {k: {m: v for m, v in r.items() if m != "decode_seconds"} for k, r in rows.items()},
        f"Video description, test split ({len(references)} videos), beam {decode.beam_size}")
    print(table)
    best = max(rows, key=lambda k: rows[k]["CIDEr"])
    result = {"task": "video_caption", "preset": cfg.name, "data_dir": data_dir,
              "beam_size": decode.beam_size, "rows": rows, "best": best, "training": training,
              "examples": {k: dict(sorted(c.items())[:5]) for k, c in candidates_by_system.items()}}
    if cfg.export.saved_models_dir:
        from vcaption.video import export as export_video

        model = keras.saving.load_model(os.path.join(output, f"{_file_name(best)}.keras"), compile=False)
        result["export"] = export_video.export_video_captioner(
            model, os.path.join(data_dir, "vocab.txt"), cfg.export.saved_models_dir,
            cfg.export.name or cfg.name, decode)
    _write(output, result, "```\n" + table + "\n```")
    return result


def _write(output: str, result: dict, table: str) -> None:
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(output, "table.md"), "w") as f:
        f.write(table + "\n")


def run(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Trains and evaluates a video preset (task "activity" or "video_caption"); writes
    `<output>/metrics.json` and returns it."""
    if strategy_name != "default":
        raise ValueError("the video trainer runs on the default strategy only")
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=1)
    if cfg.task == "activity":
        return run_activity(cfg, output, verbose)
    if cfg.task == "video_caption":
        return run_video_caption(cfg, output, verbose)
    raise ValueError(f"vcaption.video.task trains tasks 'activity' and 'video_caption', not {cfg.task!r}")
