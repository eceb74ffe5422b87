"""Where the VQA model's image encoder starts from (task setting `encoder_from`).

Antol et al. take their image features from a CNN trained on another task (VGG-16 on ImageNet).
On the built-in world that CNN is another preset's, trained first inside the VQA run through the
runtime (`vcaption.runtime.task.run_preset`): a family never imports another family, so VQA asks
for "the run of preset `object_classifier`", not for the objects family's code.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from vcaption import presets
from vcaption.config import ExperimentConfig
from vcaption.runtime import task as runtime_task


def encoder_source(encoder_from: str, cfg: ExperimentConfig, output: str, verbose: int = 1) -> str:
    """Where the image encoder's trained weights come from (task setting `encoder_from`).

    A preset name (say "object_classifier") is trained first, on this run's built-in world and
    for its encoder only (no baselines, no export), in `<output>/encoder_<name>` — and resumed or
    reused from there like any run. Anything else is a path for `encoders.load_encoder_weights`
    (e.g. `runs/object_classifier`). A run trained on another built-in world is refused: its
    training images may be this run's test images.

    Args:
        encoder_from: a preset name, or a trained run directory / `.keras` / `.weights.h5` path.
        cfg: the VQA run's config (its world and encoder settings are the source's).
        output: the VQA run directory.
        verbose: Keras progress output of the source run.

    Returns:
        The path `encoders.load_encoder_weights` reads.
    """
    if encoder_from not in presets.PRESETS:
        check_same_world(encoder_from, cfg)
        return encoder_from
    run_dir = os.path.join(output, f"encoder_{encoder_from}")
    if not tf.io.gfile.exists(os.path.join(run_dir, "model.keras")):
        if cfg.data.data_dir:
            raise ValueError(f"encoder_from={encoder_from!r} trains that preset on the built-in world, "
                             f"but this run reads {cfg.data.data_dir}: give a trained run directory")
        print(f"{cfg.name}: training {encoder_from} first, for its image encoder -> {run_dir}")
        runtime_task.run_preset(source_config(encoder_from, cfg), run_dir, verbose=verbose)
    check_same_world(run_dir, cfg)
    return run_dir


def source_config(name: str, cfg: ExperimentConfig) -> ExperimentConfig:
    """Preset `name` as the encoder source of `cfg`: the same encoder (architecture and image
    size) on the same built-in world, without baselines or export (only its encoder is used)."""
    source = presets.get_preset(name)
    same_encoder = {k: cfg.model_args[k] for k in ("encoder", "image_size") if k in cfg.model_args}
    return dataclasses.replace(
        source, model_args={**source.model_args, **same_encoder},
        data=dataclasses.replace(source.data, shapes_root=cfg.data.shapes_root,
                                 shapes_images=cfg.data.shapes_images,
                                 shapes_seed=cfg.data.shapes_seed, image_size=cfg.data.image_size),
        train=dataclasses.replace(source.train, baselines=False),
        export=dataclasses.replace(source.export, saved_models_dir=""))


def check_same_world(source: str, cfg: ExperimentConfig) -> None:
    """Refuses a source run (its config.json) trained on another built-in world than `cfg`'s.

    Args:
        source: a run directory, or a file inside one (its `model.keras`...).
        cfg: the VQA run's config.

    Raises:
        ValueError naming both worlds. Sources without a config.json, and runs on users' data
        (`data.data_dir`), are not checked: only the built-in worlds share scenes.
    """
    run_dir = source if tf.io.gfile.isdir(source) else os.path.dirname(source)
    config_path = os.path.join(run_dir, "config.json")
    if cfg.data.data_dir or not tf.io.gfile.exists(config_path):
        return
    with tf.io.gfile.GFile(config_path) as f:
        trained_on = json.load(f).get("data", {})
    world = ("shapes_images", "shapes_seed")
    if not trained_on.get("data_dir") and any(trained_on.get(k) != getattr(cfg.data, k) for k in world):
        raise ValueError(
            f"the encoder in {source} was trained on a built-in world of {trained_on.get('shapes_images')} "
            f"images (seed {trained_on.get('shapes_seed')}), this run uses {cfg.data.shapes_images} "
            f"(seed {cfg.data.shapes_seed}): its training images may be this run's test images")
