"""Configuration: frozen dataclasses for data, training, decoding and export, and named presets.

A preset is code: a function returning an `ExperimentConfig`, whose docstring gives the command
that runs it and the result it reaches on the built-in data. Command-line overrides use dotted
names: `python -m vcaption.train --preset lrcn_2u --set train.epochs=5 --set model.hidden_units=256`.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any, Callable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the records come from.

    Args:
        data_dir: a `beam_jobs.preprocess` output directory; None means the built-in shapes world,
            generated and preprocessed under `shapes_root` on first use.
        shapes_root: where the built-in world and its records live.
        shapes_images: images of the built-in world.
        shapes_seed: seed of the built-in world.
        shapes_novel_images: images of the built-in world's `test_novel` split (compositions held
            out of every other split, `vcaption.datasets.shapes.HeldOut`); 0: no such split.
        shapes_cluttered: the built-in world's harder images (1-6 objects, varied sizes and
            overlaps, textured noisy background; `shapes.sample_scene(cluttered=True)`).
        shapes_region_annotators: Visual Genome boxes and phrases per object from simulated
            workers besides its own (`shapes.annotator_regions`); 0: one region per object.
        shapes_noc: the built-in world of the Novel Object Captioner (`shapes.generate(noc=True)`):
            8 shapes, `shapes.NOC_HELD_OUT` in no paired train/val caption, unpaired labelled
            images and a text corpus under `<world>/noc/`.
        image_size: side of the square images the model sees.
        min_count: vocabulary threshold when preprocessing the built-in world.
        max_length: caption length limit T (words) when preprocessing the built-in world.
        feature_dim: train on precomputed features of this size instead of images.
    """

    data_dir: str | None = None
    shapes_root: str = "data/shapes18k"
    # Captioning is data-limited on this world: 4,800 training images reach test CIDEr-D 3.2-3.6
    # and 9,600 3.9, where 14,400 reach 4.0-4.15 (lrcn_2f docstring). Generating and preprocessing
    # the 18,000 images takes ~1.5 min; the VQA preset uses the same world.
    shapes_images: int = 18000
    shapes_seed: int = 0
    shapes_novel_images: int = 0
    shapes_cluttered: bool = False
    shapes_region_annotators: int = 0
    shapes_noc: bool = False
    image_size: int = 64
    min_count: int = 5
    max_length: int = 16
    feature_dim: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to fit.

    Args:
        epochs: passes over the training captions.
        batch_size: captions per step (global, across replicas).
        optimizer: "adam", "rmsprop" or "sgd" (with `momentum`).
        learning_rate: initial learning rate (cosine-decayed to 10% over the run).
        momentum: SGD momentum.
        clip_value: element-wise gradient clipping (the papers clip at 5).
        weight_decay: decoupled weight decay (L2 in the papers).
        checkpoint_every: save a resumable checkpoint every this many steps.
        seed: shuffling and initialization seed.
        baselines: also train the blind baseline and evaluate nearest-neighbour retrieval.
        captions_per_image: K > 1: K captions of each image share one CNN pass per step (a batch
            holds batch_size // K images), for expensive fine-tuned CNNs. 1 (the default): every
            caption comes with its own image. On the built-in world K = 5 at batch 64 reached
            validation CIDEr-D 2.56 after the default 1,875 steps, against ~3.6 with K = 1: there
            the CNN, not the decoder, needs the images, and a batch of 12 images is too few.
        word_dropout: captioners: the share of input words (not <start>, not padding) replaced
            by <unk> in training (Bowman et al. 2016, §3.3), so that the next word must come more
            from the image than from the word before it; 0 (the default): none.
        steps_per_execution: training steps per call into the compiled train function (Keras
            `steps_per_execution`): one Python round trip per this many steps. Lowered to the
            largest divisor of the checkpoint interval, so intervals keep their exact length;
            the steps themselves are the same. On the built-in world's small models the round
            trip is a good part of a step (the default preset: ~10% faster with 10).
        self_critical_steps: captioners: after maximum-likelihood training, this many steps of
            self-critical fine-tuning on CIDEr-D (`vcaption.captioning.self_critical`, Rennie et
            al. 2017), from the best checkpoint; 0 (the default): none. With `--strategy
            mirrored` or `multi_worker` it is skipped (with a notice and `"skipped"` in
            `metrics.json`'s training summary): its loop is single-replica.
        self_critical_images: images per self-critical step.
        self_critical_samples: captions sampled per image and step (at least 2: each sample's
            baseline is the mean reward of the image's others).
        self_critical_learning_rate: Adam's constant learning rate for the fine-tuning.
    """

    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    momentum: float = 0.9
    clip_value: float = 5.0
    weight_decay: float = 0.0
    checkpoint_every: int = 300
    seed: int = 0
    baselines: bool = True
    captions_per_image: int = 1
    word_dropout: float = 0.0
    steps_per_execution: int = 10
    self_critical_steps: int = 0
    self_critical_images: int = 16
    self_critical_samples: int = 5
    self_critical_learning_rate: float = 5e-5


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """How captions are generated for evaluation and export.

    Args:
        beam_size: beam width k (1 = greedy).
        max_length: maximum generated tokens, <end> included.
        alpha: length-normalization exponent of ((5 + |Y|) / 6) ** alpha.
        n_best: captions returned per image by the export.
    """

    beam_size: int = 3
    max_length: int = 17
    alpha: float = 0.0
    n_best: int = 3


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Where exports go.

    Args:
        saved_models_dir: root of `<name>/<version>/` SavedModels; "" skips the export.
        name: model name under the root; default: the preset name.
        serving_config: the model server config rewritten after the export to name every model
            under `saved_models_dir` (`vcaption.serving.config`); None: `serving/models.config`
            beside `saved_models_dir`; "": left alone.
    """

    saved_models_dir: str = "saved_models"
    name: str | None = None
    serving_config: str | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole run: the task, the model class and its constructor arguments, plus the other configs.

    `task` picks the family's task (`vcaption.registry.TASKS`): "caption" (the default) or another
    task's; `task_args` holds that trainer's own settings (`--set task.<name>=value`).
    """

    name: str
    model: str
    model_args: Mapping[str, Any]
    task: str = "caption"
    task_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    decode: DecodeConfig = DecodeConfig()
    export: ExportConfig = ExportConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"model_args": dict(self.model_args),
                                           "task_args": dict(self.task_args)}


# Filled by the `@preset` functions of the modules in `vcaption/presets/` (one per family); read
# through `vcaption.presets` (`get_preset`, `preset_names`), which imports them all.
PRESETS: dict[str, Callable[[], ExperimentConfig]] = {}


def preset(fn: Callable[[], ExperimentConfig]) -> Callable[[], ExperimentConfig]:
    PRESETS[fn.__name__] = fn
    return fn


# Spellings people type on a command line for Python's True / False / None (as YAML and JSON do):
# without them `--set train.baselines=false` would set the string "false", which is true.
_KEYWORDS = {"true": True, "false": False, "none": None, "null": None}


def _parse_value(text: str) -> Any:
    if text.strip().lower() in _KEYWORDS:
        return _KEYWORDS[text.strip().lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # bare strings: --set train.optimizer=sgd


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Applies `section.field=value` overrides (`model.<arg>` sets a model constructor argument,
    `task.<arg>` a task trainer's setting)."""
    for override in overrides:
        key, sep, raw = override.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"override {override!r} must look like section.field=value")
        value = _parse_value(raw)
        if section == "model":
            config = dataclasses.replace(config, model_args={**config.model_args, field: value})
            continue
        if section == "task":
            config = dataclasses.replace(config, task_args={**config.task_args, field: value})
            continue
        sub = getattr(config, section, None)
        if not dataclasses.is_dataclass(sub) or field not in {f.name for f in dataclasses.fields(sub)}:
            raise ValueError(f"unknown setting {key!r} in override {override!r}")
        config = dataclasses.replace(config, **{section: dataclasses.replace(sub, **{field: value})})
    return config
