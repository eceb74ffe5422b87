"""Format name -> reader, the one place the Beam job and the CLI look readers up.

Example:
    >>> from vcaption.datasets import registry
    >>> for item in registry.read("coco", "coco/annotations/captions_val2017.json"):
    ...     print(item)
"""

from __future__ import annotations

from typing import Callable

from vcaption.datasets import coco, flickr8k, karpathy, msvd, visual_genome, vqa
from vcaption.datasets.base import ReaderOutput

READERS: dict[str, Callable[..., ReaderOutput]] = {
    "karpathy": karpathy.read,
    "coco": coco.read,
    "flickr8k": flickr8k.read,
    "vqa": vqa.read,
    "vg": visual_genome.read,
    "msvd": msvd.read,
}


def read(format: str, input_path: str, images_dir: str | None = None, **options) -> ReaderOutput:
    """Reads `input_path` with the reader registered as `format` (see `READERS`).

    Args:
        format: one of the keys of `READERS`.
        input_path: the annotation file (or directory) the reader accepts.
        images_dir: where the images/videos are; None lets the reader find the published layout.
        **options: reader-specific options (e.g. `split=` for coco and msvd).

    Raises:
        ValueError: for an unknown format, listing the valid names.
    """
    if format not in READERS:
        raise ValueError(f"unknown dataset format {format!r}; valid formats: {', '.join(sorted(READERS))}")
    return READERS[format](input_path, images_dir, **options)
