"""The videos both video tasks read: their settings (`task_args`) and the built-in shapes videos.

The built-in world's videos are written as MSR-VTT (`msrvtt/videodatainfo.json` + `videos/*.avi`),
read by the MSR-VTT reader and preprocessed by `beam_jobs.preprocess --format msvd --optical-flow`
into video records with frames and flow images (LRCN §4), once per setting: the job runs as its own
process (`runtime.builtin_data.preprocess_once`), exactly as a user runs it on real videos.
"""

from __future__ import annotations

import math
import os
from typing import Mapping

from vcaption.config import ExperimentConfig
from vcaption.runtime import builtin_data
from vcaption.runtime.prepared_data import PreparedData

# Defaults of the built-in video data (task_args override them): small on purpose, for a 2-core CPU.
# "frames" are generated per video; the records keep every `frame_stride`-th of them.
VIDEO_DEFAULTS = {"videos": 480, "frames": 24, "video_size": 32, "clip_length": 16, "clip_stride": 8,
                  "flow_scale": 16.0, "frame_stride": 1}


def video_settings(task_args: Mapping) -> dict:
    """VIDEO_DEFAULTS with the preset's `task_args`, plus "record_frames": frames kept per record.

    Args:
        task_args: `cfg.task_args`, or the "task_args" of a run's config.json.
    """
    video = {**VIDEO_DEFAULTS, **{k: v for k, v in task_args.items() if k in VIDEO_DEFAULTS}}
    return {**video, "record_frames": math.ceil(video["frames"] / video["frame_stride"])}


def builtin_video_world(cfg: ExperimentConfig) -> str:
    """The directory of the built-in world the preset's videos are generated into."""
    video = video_settings(cfg.task_args)
    # Named by every setting that changes its contents, so that presets with different settings
    # never share one; "hard": the videos with distractors that move, camera noise and the
    # activities no single frame tells apart (a world generated before them is not reused).
    return os.path.join(cfg.data.shapes_root,
                        f"world-videos{video['videos']}-f{video['frames']}-s{video['video_size']}-hard")


def prepare_builtin_videos(cfg: ExperimentConfig) -> PreparedData:
    """Generates the shapes world's videos and preprocesses them (once each); returns the records.

    Args:
        cfg: the preset: `task_args` (`VIDEO_DEFAULTS`) say how many videos of which size, and
            `data` where they live (`shapes_root`) and how the records are cut (image size,
            vocabulary threshold, caption length).
    """
    from vcaption.datasets import shapes

    video = video_settings(cfg.task_args)
    world = builtin_video_world(cfg)
    tag = os.path.basename(world).removeprefix("world-")
    records_dir = os.path.join(cfg.data.shapes_root,
                               f"records-{tag}-stride{video['frame_stride']}-{cfg.data.image_size}-flow")
    info = os.path.join(world, "msrvtt", "videodatainfo.json")
    if not os.path.exists(info):
        print(f"Generating {video['videos']} built-in videos in {world}")
        shapes.generate(world, num_images=12, num_videos=video["videos"], seed=cfg.data.shapes_seed,
                        image_size=32, video_size=video["video_size"], num_frames=video["frames"])
    return builtin_data.preprocess_once("msvd", info, records_dir, [
        "--image-size", str(cfg.data.image_size), "--min-count", str(cfg.data.min_count),
        "--max-length", str(cfg.data.max_length), "--max-frames", str(video["record_frames"]),
        "--frame-stride", str(video["frame_stride"]),
        "--optical-flow", "--flow-scale", str(video["flow_scale"]), "--num-shards", "2"])


def prepared_videos(cfg: ExperimentConfig) -> PreparedData:
    """`data.data_dir` when the preset names one (video records with flow), else the built-in videos."""
    if cfg.data.data_dir:
        return PreparedData(cfg.data.data_dir)
    return prepare_builtin_videos(cfg)
