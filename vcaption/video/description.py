"""Video description (task "video_caption"): mean-pool (Venugopalan et al., NAACL 2015), S2VT
(Venugopalan et al., ICCV 2015), a frame LSTM with LRCN's factored decoder, and LRCN §6's decoders
over a predicted semantic tuple (Donahue et al. §6, Table 7; `video.tuple_systems`).

    python -m vcaption.train --preset video_description [--output runs/video_description]

Data: the preset's `data.data_dir` (video records), or the built-in videos (`video.builtin_videos`).
Systems: each of `task_args["systems"]` (name -> {"model": class, **constructor arguments}; default
the preset's model), trained with teacher forcing on a random reference description of each video
by the shared routine (`runtime.trainer.fit`). Test: beam-search captions of the test split scored
with pycocoevalcap (BLEU, METEOR, ROUGE-L, CIDEr-D) through the captioning evaluation; one table
(`metrics.json`, `table.md`). Export: the best system by CIDEr-D (`video.export.export_video_captioner`),
also from the run directory alone (`export_run`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping

import keras
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import records, registry, text
from vcaption.captioning import evaluation
from vcaption.config import DecodeConfig, ExperimentConfig
from vcaption.losses import MaskedCaptionLoss
from vcaption.metrics import caption as caption_metrics
from vcaption.runtime import devices
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained
from vcaption.runtime.trainer import TrainingPlan, steps_per_epoch
from vcaption.video import run_files, tuple_systems
from vcaption.video.builtin_videos import prepared_videos, video_settings
from vcaption.video.export import export_video_captioner

TEST_BATCH = 16
EXAMPLES_PER_SYSTEM = 5  # captions of each system kept in metrics.json, by video id


def caption_systems(cfg: ExperimentConfig) -> dict[str, dict]:
    """System name -> {"model": class name, **constructor arguments}; default: the preset's model."""
    systems = cfg.task_args.get("systems")
    if systems:
        return {name: dict(spec) for name, spec in systems.items()}
    return {cfg.name: {"model": cfg.model, **cfg.model_args}}


def build_captioner(cfg: ExperimentConfig, spec: Mapping, vocab_size: int) -> keras.Model:
    """The captioner of one `caption_systems` entry, reading the records' frames at their size."""
    args = devices.resolve_dtype(spec)
    return registry.build(args.pop("model"), vocab_size=vocab_size,
                          num_frames=video_settings(cfg.task_args)["record_frames"],
                          image_size=cfg.data.image_size, **args)


def training_plan(cfg: ExperimentConfig, data: PreparedData, system: str) -> TrainingPlan:
    """How one captioner trains: an epoch is a pass over the training videos, each with a
    different one of its reference descriptions every time (the dataset picks one at random).

    Args:
        cfg: the preset (batch size, seed, `task_args` frames).
        data: the video records.
        system: its name (printed; names its files in the run directory).
    """
    tcfg = cfg.train
    videos = data_lib.make_dataset(data.directory, "train", "video", batch_size=tcfg.batch_size,
                                   image_size=cfg.data.image_size,
                                   num_frames=video_settings(cfg.task_args)["record_frames"],
                                   seed=tcfg.seed, repeat=True)
    pairs = videos.map(lambda x, y: ({"visual": tf.cast(x["frames"], tf.float32),  # 0..255
                                      "caption_in": y["caption_in"]}, y["caption_out"]))
    return TrainingPlan(system, pairs, steps_per_epoch(data.stats["examples"]["train"], tcfg.batch_size),
                        prefix=run_files.system_prefix(system), loss=MaskedCaptionLoss())


def captioner_system(cfg: ExperimentConfig, data: PreparedData, name: str, spec: Mapping,
                     vocab_size: int) -> System:
    """One of `caption_systems` as the runtime trains it, saved as `<name>.keras`."""
    return System(name, build=lambda: build_captioner(cfg, spec, vocab_size),
                  plan=lambda model: training_plan(cfg, data, name),
                  keras_file=run_files.system_keras_file(name))


def caption_eval_dataset(data: PreparedData, split: str, image_size: int, num_frames: int,
                         batch_size: int = TEST_BATCH) -> tf.data.Dataset:
    """`{"image_id": video ids, "visual": float32 frames [B, T, S, S, 3], "references": ragged}`, the
    element structure `captioning.evaluation.generate_captions` reads."""

    def to_element(serialized):
        parsed = records.parse_video_example(serialized)
        frames = tf.ensure_shape(data_lib.decode_clip(parsed["frames_jpeg"], image_size, num_frames),
                                 [num_frames, image_size, image_size, 3])
        return {"image_id": parsed["video_id"], "visual": tf.cast(frames, tf.float32),
                "references": parsed["captions"]}

    serialized = data_lib.read_records(data.split_pattern(split), shuffle=False)
    return serialized.map(to_element, num_parallel_calls=tf.data.AUTOTUNE).ragged_batch(batch_size)


def describe_and_score(model: keras.Model, vocab: text.Vocabulary, dataset: tf.data.Dataset,
                       decode: DecodeConfig) -> tuple[dict, dict[str, str], int]:
    """(pycocoevalcap scores + "decode_seconds", video id -> caption, videos) of beam-search captions."""
    start = time.perf_counter()
    candidates, references, _ = evaluation.generate_captions(evaluation.make_generator(model, decode),
                                                             vocab, dataset)
    scores = caption_metrics.score_captions(references, candidates, spice=False)
    scores["decode_seconds"] = round(time.perf_counter() - start, 1)
    return scores, candidates, len(references)


def decode_settings(config: Mapping, options: Mapping) -> DecodeConfig:
    """A run's decoding settings (`config["decode"]`) with the export command's "beam_size" /
    "n_best" over them (None keeps the run's); N-best is cut to the beam, which holds no more."""
    decode = DecodeConfig(**config.get("decode", {}))
    decode = dataclasses.replace(decode, **{k: options[k] for k in ("beam_size", "n_best")
                                            if options.get(k) is not None})
    if decode.n_best > decode.beam_size:
        print(f"export: n_best {decode.n_best} > beam_size {decode.beam_size}; "
              f"exporting {decode.beam_size}-best")
        decode = dataclasses.replace(decode, n_best=decode.beam_size)
    return decode


class VideoCaptionTask(Task):
    """Each of `caption_systems` trained, scored on the test split with beam search, the best
    by CIDEr-D exported."""

    name = "video_caption"

    def prepare_data(self, cfg, run, verbose):
        return prepared_videos(cfg)

    def systems(self, cfg, data, run):
        vocab_size, specs = data.vocabulary().size, caption_systems(cfg)
        if not any(tuple_systems.is_tuple_system(spec) for spec in specs.values()):
            return [captioner_system(cfg, data, name, spec, vocab_size) for name, spec in specs.items()]
        # LRCN §6: the tuple predictor first; its decoders hold a frozen copy of it.
        tuples = tuple_systems.read_tuples(tuple_systems.tuples_path(cfg))
        return [tuple_systems.predictor_system(cfg, data, tuples)] + [
            tuple_systems.captioner_system(cfg, data, run, name, spec, vocab_size, tuples)
            if tuple_systems.is_tuple_system(spec) else captioner_system(cfg, data, name, spec, vocab_size)
            for name, spec in specs.items()]

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        vocab, decode, specs = data.vocabulary(), cfg.decode, caption_systems(cfg)
        test = caption_eval_dataset(data, "test", cfg.data.image_size,
                                    video_settings(cfg.task_args)["record_frames"])
        oracle = lambda spec: spec.get("tuple_input") == "oracle"  # noqa: E731
        tuples = (tuple_systems.read_tuples(tuple_systems.tuples_path(cfg))
                  if tuple_systems.PREDICTOR_SYSTEM in trained else None)
        rows, candidates = {}, {}
        for name, spec in specs.items():
            dataset = tuple_systems.oracle_eval_dataset(cfg, data, tuples) if oracle(spec) else test
            rows[name], candidates[name], videos = describe_and_score(trained[name].model, vocab, dataset,
                                                                      decode)
        table = evaluation.format_table(
            {name: {m: v for m, v in row.items() if m != "decode_seconds"} for name, row in rows.items()},
            f"Video description, test split ({videos} videos), beam {decode.beam_size}")
        result = {"task": self.name, "preset": cfg.name, "data_dir": data.directory,
                  "beam_size": decode.beam_size, "rows": rows}
        if tuples is not None:
            predictor_rows = tuple_systems.predictor_rows(cfg, data, trained[tuple_systems.PREDICTOR_SYSTEM].model,
                                                          tuples)
            table7 = tuple_systems.format_table7(rows, specs, f"LRCN Table 7 layout, test split ({videos} "
                                                              f"videos), beam {decode.beam_size}, %")
            table = "\n\n".join([table, table7, tuple_systems.format_predictor_table(predictor_rows, videos)])
            result["tuple_predictor"] = predictor_rows
        print(table)
        run_files.write_table(run, "```\n" + table + "\n```")
        # The export serves frames: the oracle, which reads the true tuple, is never the run's model.
        best = max((name for name in rows if not oracle(specs[name])), key=lambda name: rows[name]["CIDEr"])
        run_files.keep_as_run_model(run, best)  # what the export serves
        return {**result, "best": best, "training": {name: t.training for name, t in trained.items()},
                "examples": {name: dict(sorted(c.items())[:EXAMPLES_PER_SYSTEM])
                             for name, c in candidates.items()}}

    def export(self, cfg, data, trained, run):
        # From the saved files, exactly as `python -m vcaption.export --run` exports the run later.
        return self.export_run(run, cfg.export.saved_models_dir, cfg.export.name or cfg.name, {})

    def export_run(self, run, output, name, options):
        """The run's best system (model.keras) with its vocabulary and decoding settings."""
        model = registry.load_model(run.file(run_files.RUN_MODEL))
        return export_video_captioner(model, run.data.vocabulary_path, output, name,
                                      decode_settings(run.read_config(), options))
