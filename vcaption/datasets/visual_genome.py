"""Reader for Visual Genome region descriptions (dense captioning data).

Format (Krishna et al., "Visual Genome", IJCV 2017;
https://homes.cs.washington.edu/~ranjay/visualgenome/api.html), `region_descriptions.json`, boxes in
pixels:

```json
[{"id": 1,
  "regions": [{"region_id": 1382, "image_id": 1, "x": 421, "y": 57, "width": 82, "height": 139,
               "phrase": "the clock is green in colour"}]}]
```

with, optionally next to it, `image_data.json` (where each image is):

```json
[{"image_id": 1, "width": 800, "height": 600, "coco_id": null, "flickr_id": null,
  "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg"}]
```

and `densecap_splits.json` (Johnson et al., "DenseCap", CVPR 2016, https://github.com/jcjohnson/densecap):
`{"train": [image ids], "val": [...], "test": [...]}`. Without it the split is a stable hash of the
image id, 80/10/10. Examples carry regions and no captions.

Visual Genome has one phrase per box, and several workers often box the same thing. Karpathy &
Fei-Fei (PAMI §4, "Data Preprocessing") group the phrases of boxes that overlap at IoU >= 0.7 and
give the group the mean of their boxes, so that a caption is scored against every phrase of its
region: `merge_regions`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from vcaption.datasets._common import (
    ImageDir, SeenIds, field_problem, media_problem, name_problem, printable, text_problem)
from vcaption.datasets.base import (
    CAPTION_EMPTY, MALFORMED_ENTRY, NO_VALID_CAPTIONS, REGION_INVALID, UNKNOWN_SPLIT, CaptionedImage,
    DeadLetter, Region, ReaderOutput, canonical_split, hash_split, join_path, load_json, parent_dir)

_ID = (int, str)
_NUMBER = (int, float)
_REGION_FIELDS = {"x": _NUMBER, "y": _NUMBER, "width": _NUMBER, "height": _NUMBER, "phrase": object}


def read(input_path: str, images_dir: str | None = None, *, image_data_path: str | None = None,
         splits_path: str | None = None) -> ReaderOutput:
    """Yields a `CaptionedImage` with regions (and no captions) per image, or dead letters.

    Args:
        input_path: `region_descriptions.json`, or the directory holding it.
        images_dir: where the images are. Defaults to `../images`, then the JSON's directory (the
            published zips unpack `VG_100K/` and `VG_100K_2/` there).
        image_data_path: `image_data.json`; defaults to the one next to the regions, if any.
        splits_path: `densecap_splits.json`; defaults to the one next to the regions, if any.

    Example:
        >>> for example in read("visual_genome/region_descriptions.json"):
        ...     print(example.id, example.regions[0].phrase, example.regions[0].box)
    """
    if tf.io.gfile.isdir(input_path):
        input_path = join_path(input_path, "region_descriptions.json")
    directory = parent_dir(input_path)
    files = {name: join_path(directory, name) for name in ("image_data.json", "densecap_splits.json")}
    image_files = _image_files(image_data_path or _if_exists(files["image_data.json"]))
    split_of = _splits(splits_path or _if_exists(files["densecap_splits.json"]))
    images = ImageDir(images_dir, [join_path(parent_dir(directory), "images"), directory,
                                   join_path(directory, "images")])
    data = load_json(input_path)
    if not isinstance(data, list):
        raise ValueError(f"{input_path}: not a Visual Genome region file (expected a JSON list of images)")
    image_ids, region_ids = SeenIds("image"), SeenIds("region")
    for index, entry in enumerate(data):
        where = f"{input_path}: [{index}]"
        problem = field_problem(entry, {"id": _ID, "regions": list})
        if problem:
            yield DeadLetter(where, "image", MALFORMED_ENTRY, f"{where}: {problem}", input_path)
            continue
        id = str(entry["id"])
        candidates = (*image_files.get(id, ()), f"{id}.jpg", f"VG_100K/{id}.jpg", f"VG_100K_2/{id}.jpg")
        dead = (name_problem(id, "image", "id", where, input_path)
                or image_ids.duplicate(id, where, input_path)
                or media_problem(candidates, id, "image", where, input_path))
        if dead:
            yield dead
            continue
        where = f"{where} (image {id})"
        split = hash_split(id) if split_of is None else split_of.get(id)
        if split is None:
            yield DeadLetter(id, "image", UNKNOWN_SPLIT, f"{where}: in none of the densecap splits",
                             input_path)
            continue
        regions = []
        for k, region in enumerate(entry["regions"]):
            item = _region(region, f"{where}: regions[{k}]", f"{id}:{k}", region_ids, input_path)
            if isinstance(item, DeadLetter):
                yield item
            else:
                regions.append(item)
        if not regions:
            yield DeadLetter(id, "image", NO_VALID_CAPTIONS, f"{where}: no valid regions", input_path)
            continue
        yield CaptionedImage(id, split, images.path(*candidates), (), tuple(regions), source=input_path)


def _region(region, where: str, fallback_id: str, region_ids: SeenIds, source: str) -> Region | DeadLetter:
    problem = field_problem(region, _REGION_FIELDS)
    id = str(region.get("region_id", fallback_id)) if isinstance(region, dict) else fallback_id
    if problem:
        return DeadLetter(id, "region", MALFORMED_ENTRY, f"{where}: {problem}", source)
    duplicate = region_ids.duplicate(id, where, source)
    if duplicate:
        return duplicate
    text = text_problem(region["phrase"], "phrase")
    if text:
        return DeadLetter(id, "region", text[0], f"{where}: {text[1]}", source)
    if not region["phrase"].strip():
        return DeadLetter(id, "region", CAPTION_EMPTY, f"{where}: empty phrase", source)
    box = tuple(float(region[key]) for key in ("x", "y", "width", "height"))
    if box[2] <= 0 or box[3] <= 0:
        return DeadLetter(id, "region", REGION_INVALID, f"{where}: box {box} has non-positive size", source)
    return Region(box, phrase=region["phrase"], category="", id=printable(id))


def _if_exists(path: str) -> str | None:
    return path if tf.io.gfile.exists(path) else None


def _image_files(path: str | None) -> dict[str, tuple[str, ...]]:
    """{image id: candidate relative paths from the url}: "1.jpg" then "VG_100K_2/1.jpg"."""
    if path is None:
        return {}
    data = load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: not a Visual Genome image_data file (expected a JSON list)")
    files = {}
    for entry in data:
        # v1.0 names the id "id", v1.2+ "image_id"; entries without a url add nothing to look up.
        if isinstance(entry, dict) and isinstance(entry.get("url"), str):
            parts = entry["url"].rstrip("/").split("/")
            id = entry.get("image_id", entry.get("id"))
            files[str(id)] = (parts[-1], "/".join(parts[-2:]))
    return files


def _splits(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    data = load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a densecap splits file (expected {{'train': [ids], ...}})")
    split_of = {}
    for name, ids in data.items():
        split = canonical_split(name)
        if split is None or not isinstance(ids, list):
            raise ValueError(f"{path}: unexpected entry {name!r}; expected train/val/test lists of ids")
        for id in ids:
            split_of.setdefault(str(id), split)
    return split_of


# Karpathy & Fei-Fei §4: boxes overlapping at least this much describe one region.
MERGE_IOU = 0.7


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of (x, y, width, height) boxes: [A, 4], [B, 4] -> [A, B].

    Example:
        >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10], [20, 20, 5, 5]]))
        array([[0.33333333, 0.        ]])
    """
    a = np.asarray(boxes_a, np.float64)[:, None, :]  # [A, 1, 4]
    b = np.asarray(boxes_b, np.float64)[None, :, :]  # [1, B, 4]
    width = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    intersection = np.clip(width, 0, None) * np.clip(height, 0, None)  # [A, B]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def merge_groups(boxes: Sequence[Sequence[float]], threshold: float = MERGE_IOU) -> list[list[int]]:
    """Indices of `boxes` grouped into regions: every box in exactly one group.

    The paper says only "grouping all captions that heavily overlap (IoU >= 0.7)"; the grouping
    is DenseCap's evaluation (`merge_boxes`, Johnson, Karpathy & Fei-Fei 2016), greedy and not
    transitive: the box with the most unmerged boxes at IoU >= `threshold` (itself included;
    the first such box on ties) takes all of them as one group, and so on until none is left.
    A chain of boxes each overlapping the next thus never merges ends that do not overlap.

    Example:
        >>> merge_groups([(0, 0, 10, 10), (50, 50, 10, 10), (0, 0, 10, 11)])
        [[0, 2], [1]]
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
    if len(boxes) == 0:
        return []
    close = box_iou(boxes, boxes) >= threshold  # [N, N]; the diagonal is True (IoU 1)
    left = np.ones(len(boxes), bool)
    groups = []
    while left.any():
        neighbours = close & left[None, :] & left[:, None]  # [N, N], among unmerged boxes
        centre = int(np.argmax(neighbours.sum(axis=1)))
        group = np.flatnonzero(neighbours[centre])
        groups.append([int(i) for i in group])
        left[group] = False
    return groups


def merge_regions(regions: Sequence[Region], threshold: float = MERGE_IOU) -> list[tuple[tuple, list[str]]]:
    """One image's regions merged at IoU >= `threshold` (`merge_groups`): [(mean box, phrases)],
    the phrases in region order. Karpathy & Fei-Fei §4 merge the Visual Genome test regions so
    that each caption is scored against all the phrases of its region.

    Example:
        >>> merge_regions([Region((0, 0, 10, 10), "red ball"), Region((0, 0, 10, 12), "a red circle")])
        [((0.0, 0.0, 10.0, 11.0), ['red ball', 'a red circle'])]
    """
    boxes = [r.box for r in regions]
    return [(tuple(float(v) for v in np.mean([boxes[i] for i in group], axis=0)),
             [regions[i].phrase for i in group])
            for group in merge_groups(boxes, threshold)]
