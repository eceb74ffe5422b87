"""Shared fixtures: the real COCO slice in ../shared (skipped when absent) and tiny built-in data."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def coco_mini() -> pathlib.Path:
    """../shared/data/coco-mini: 239 real COCO 2017 JPEGs with captions and boxes."""
    path = SHARED_DATA / "coco-mini"
    if not (path / "annotations" / "captions_val2017.json").exists():
        pytest.skip(f"real-data slice not present at {path}")
    return path


@pytest.fixture(scope="session")
def coco_mini_jpegs() -> list[bytes]:
    """Two real COCO JPEGs (one grayscale) when ../shared is present, else an empty list."""
    val = SHARED_DATA / "coco-mini" / "val2017"
    names = ["000000431848.jpg", "000000397133.jpg"]
    if not all((val / n).exists() for n in names):
        return []
    return [(val / n).read_bytes() for n in names]


@pytest.fixture(scope="session")
def shapes_world(tmp_path_factory) -> pathlib.Path:
    """A tiny built-in shapes world (60 images, 12 videos), generated once per test session."""
    from vcaption.datasets import shapes

    out = tmp_path_factory.mktemp("shapes")
    shapes.generate(str(out), num_images=60, num_videos=12, seed=3, image_size=64, video_size=32,
                    num_frames=16)
    return out


@pytest.fixture(scope="session")
def shapes_records(shapes_world, tmp_path_factory) -> pathlib.Path:
    """The tiny shapes world preprocessed in Karpathy format at 32x32 (min-count 1)."""
    from beam_jobs import preprocess

    out = tmp_path_factory.mktemp("shapes_records")
    preprocess.run(["--format", "karpathy", "--input", str(shapes_world / "dataset_shapes.json"),
                    "--output", str(out), "--image-size", "32", "--min-count", "1"])
    return out
