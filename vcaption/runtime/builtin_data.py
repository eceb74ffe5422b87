"""The built-in shapes world, generated and preprocessed once, as the default data of every preset.

The world is written in the public formats (`vcaption.datasets.shapes`) and preprocessed by the
same Beam job users run on real data, launched as its own process (`python -m
beam_jobs.preprocess`) exactly as a user launches it: the library never imports the jobs that are
built on it. Outputs are cached by their settings under `data.shapes_root`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

from vcaption import config as config_lib
from vcaption.runtime import profile
from vcaption.runtime.prepared_data import PreparedData

# The built-in world's file that `beam_jobs.preprocess --format F` reads, by format.
BUILTIN_SOURCES = {"karpathy": "dataset_shapes.json", "coco": "annotations", "vqa": "vqa",
                   "vg": "visual_genome"}


def world_variant(cfg: config_lib.DataConfig) -> str:
    """The part of a world's (and its records') directory name that its generator options give."""
    return ((f"-novel{cfg.shapes_novel_images}" if cfg.shapes_novel_images else "")
            + ("-cluttered" if cfg.shapes_cluttered else "")
            + (f"-annotators{cfg.shapes_region_annotators}" if cfg.shapes_region_annotators else "")
            + ("-noc" if cfg.shapes_noc else ""))


def world_dir(cfg: config_lib.DataConfig) -> str:
    """Where the built-in world of these settings lives (each generator option, its own world)."""
    return os.path.join(cfg.shapes_root, "world" + world_variant(cfg))


def scenes_path(cfg: config_lib.DataConfig, given: str | None = None) -> str | None:
    """The scene ground truth (`scenes.json`) of the data: `given`, else the built-in world's
    (None for other data: grounding and alignment metrics need a generated world)."""
    if given:
        return given
    return None if cfg.data_dir else os.path.join(world_dir(cfg), "scenes.json")


def builtin_world(cfg: config_lib.DataConfig) -> str:
    """Generates the built-in shapes world (once); returns its directory (every format inside)."""
    from vcaption.datasets import shapes

    world = world_dir(cfg)
    if not os.path.exists(os.path.join(world, "dataset_shapes.json")):
        novel = f" + {cfg.shapes_novel_images} novel-composition" if cfg.shapes_novel_images else ""
        print(f"Generating the built-in shapes world ({cfg.shapes_images}{novel} images) in {world}")
        with profile.phase("generate world"):
            shapes.generate(world, num_images=cfg.shapes_images, num_videos=0, seed=cfg.shapes_seed,
                            num_novel_images=cfg.shapes_novel_images, cluttered=cfg.shapes_cluttered,
                            region_annotators=cfg.shapes_region_annotators, noc=cfg.shapes_noc)
    return world


def preprocess_once(fmt: str, source: str, output: str, args: Sequence[str]) -> PreparedData:
    """Runs `python -m beam_jobs.preprocess --format fmt --input source --output output *args`
    unless `output` already holds a finished run of it; returns the output."""
    data = PreparedData(output)
    if not data.is_complete():
        print(f"Preprocessing {source} ({fmt}) with beam_jobs.preprocess into {output}")
        command = [sys.executable, "-m", "beam_jobs.preprocess", "--format", fmt, "--input", source,
                   "--output", output, *args]
        with profile.phase(f"preprocess {fmt}"):
            completed = subprocess.run(command)
        if completed.returncode != 0:
            raise RuntimeError(f"beam_jobs.preprocess failed (exit {completed.returncode}): "
                               f"{' '.join(command)}")
    return data


def prepare_builtin_data(cfg: config_lib.DataConfig, fmt: str = "karpathy",
                         extra_args: Sequence[str] = ()) -> PreparedData:
    """Generates the shapes world and preprocesses it (once); returns the records directory.

    Args:
        cfg: where the world lives and how to preprocess it.
        fmt: which of the world's public formats to preprocess (`BUILTIN_SOURCES`): Karpathy
            captions (the default), COCO captions + instance boxes (the ranker), VQA (VQA), Visual
            Genome region descriptions (the object classifier).
        extra_args: more `beam_jobs.preprocess` flags; they name the records directory too, so
            different settings never share one.
    """
    world = builtin_world(cfg)
    tag = "".join(f"-{a.lstrip('-')}" for a in extra_args)
    prefix = "" if fmt == "karpathy" else f"{fmt}-"
    records_dir = os.path.join(cfg.shapes_root, f"records-{prefix}{cfg.image_size}{world_variant(cfg)}{tag}")
    return preprocess_once(fmt, os.path.join(world, BUILTIN_SOURCES[fmt]), records_dir,
                           ["--image-size", str(cfg.image_size), "--min-count", str(cfg.min_count),
                            "--max-length", str(cfg.max_length), *extra_args])


def prepared_data(cfg: config_lib.DataConfig, fmt: str = "karpathy",
                  extra_args: Sequence[str] = ()) -> PreparedData:
    """`data.data_dir` when the preset names one, else the built-in world in format `fmt`."""
    if cfg.data_dir:
        return PreparedData(cfg.data_dir)
    return prepare_builtin_data(cfg, fmt, extra_args)
