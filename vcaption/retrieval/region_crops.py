"""Image regions with their phrases -> a Karpathy-format dataset of region crops.

Region-level captioning (Karpathy & Fei-Fei §4.3) trains and scores a captioner on regions rather
than whole images. Every region is cut out of its source image and warped to a square (R-CNN
style, as the ranker crops regions); the crops with their phrases become one Karpathy-format file
that the usual `beam_jobs.preprocess --format karpathy` turns into caption records.

Example:
```python
regions = {"train": group_regions(snippets), "test": group_regions(annotations)}
dataset, written = write_region_dataset(regions, image_paths, crop_size=32, output="run/region_data")
```
"""

from __future__ import annotations

import collections
import json
import os
from typing import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from vcaption import images


def crop_region(image: np.ndarray, box_xywh: Sequence[float], crop_size: int,
                context: int = 0) -> np.ndarray | None:
    """The pixels of one box, warped to `crop_size` squared (aspect not kept, as R-CNN crops are).

    Args:
        image: uint8 [H, W, 3].
        box_xywh: (x, y, width, height) in pixels (Visual Genome convention), clipped to the image.
        crop_size: side of the output.
        context: source pixels of surroundings kept on every side (R-CNN's context padding, but in
            source pixels: a small object then fills less of its crop than a large one, so that
            its scale stays visible after warping).

    Returns:
        uint8 [crop_size, crop_size, 3], or None when the clipped box is empty.

    Example:
        >>> crop_region(np.zeros((128, 128, 3), np.uint8), (10, 20, 30, 40), 32).shape
        (32, 32, 3)
    """
    height, width = image.shape[:2]
    x, y, w, h = (float(v) for v in box_xywh)
    x, y, w, h = x - context, y - context, w + 2 * context, h + 2 * context
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return images.resize_image(tf.constant(image[y0:y1, x0:x1]), crop_size).numpy()


def group_regions(entries: Iterable[Mapping]) -> list[dict]:
    """Visual Genome images -> one item per distinct (image, box) with all its phrases, in order.

    Returns:
        [{"image_id", "box": (x, y, width, height), "phrases": [str]}]
    """
    grouped: dict = collections.OrderedDict()
    for entry in entries:
        for region in entry["regions"]:
            box = tuple(int(region[k]) for k in ("x", "y", "width", "height"))
            key = (str(entry["id"]), box)
            grouped.setdefault(key, []).append(region["phrase"])
    return [{"image_id": image_id, "box": box, "phrases": phrases}
            for (image_id, box), phrases in grouped.items()]


def write_region_dataset(regions_by_split: Mapping[str, Sequence[Mapping]], image_paths: Mapping[str, str],
                         crop_size: int, output: str, context: int = 0) -> tuple[str, dict]:
    """Crops every region to `<output>/crops/*.png` and writes them, with their phrases, as one
    Karpathy-format file `<output>/dataset_regions.json` for `beam_jobs.preprocess --format karpathy`.

    Args:
        regions_by_split: split -> `group_regions` items.
        image_paths: image id -> path of its source image (local or gs://).
        crop_size: side of the crops.
        output: directory to write (local or gs://).
        context: source pixels of surroundings around every box (`crop_region`).

    Returns:
        (path of the dataset file, {"regions": {split: count}, "dead_letter": count}). Regions that
        cannot be cropped (unknown image, empty box) go to `<output>/dead_letter.jsonl` with the reason.
    """
    tf.io.gfile.makedirs(os.path.join(output, "crops"))
    entries, counts, dead = [], collections.Counter(), []
    decoded = (None, None)  # (path, pixels): an image's regions come together, decode it once
    for split, regions in regions_by_split.items():
        for number, region in enumerate(regions):
            key = f"{split}_{region['image_id']}_{number}"
            path = image_paths.get(region["image_id"])
            if path is None:
                dead.append({"id": key, "reason": "unknown_image",
                             "detail": f"image {region['image_id']} not found"})
                continue
            if decoded[0] != path:
                decoded = (path, images.decode_image(tf.io.read_file(path)).numpy())
            crop = crop_region(decoded[1], region["box"], crop_size, context)
            if crop is None:
                dead.append({"id": key, "reason": "empty_box",
                             "detail": f"box {region['box']} outside {path}"})
                continue
            filename = f"{key}.png"
            tf.io.write_file(os.path.join(output, "crops", filename), tf.io.encode_png(crop))
            entries.append({"filepath": "crops", "filename": filename, "cocoid": key, "split": split,
                            "image_id": region["image_id"], "box": list(region["box"]),
                            "sentences": [{"raw": p} for p in region["phrases"]]})
            counts[split] += 1
    with tf.io.gfile.GFile(os.path.join(output, "dead_letter.jsonl"), "w") as f:
        f.write("".join(json.dumps(d) + "\n" for d in dead))
    path = os.path.join(output, "dataset_regions.json")
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"dataset": "regions", "images": entries}, f)
    return path, {"regions": dict(counts), "dead_letter": len(dead)}
