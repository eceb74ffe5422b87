"""The shapes world's ground truth for region-level captioning: its image files and the annotated
regions of its test images, each with several reference phrases.

The paper scores region captions against region annotations collected for the purpose (§4.3,
Table 4); the built-in world has them for free. Every object box carries its Visual Genome phrase
(`visual_genome/region_descriptions.json`, "small red circle"), and the generator knows every
object's attributes (`scenes.json`), so the phrases that name that object in its image's
ground-truth sentences ("a tiny red circle", "a red ball") are references too. These annotations
are never used in training.

Example:
```python
paths, splits = world_image_paths(world)
test_ids = [i for i in paths if splits[i] == "test"][:500]
entries = region_references(world, test_ids)   # Visual Genome images, several phrases per box
```
"""

from __future__ import annotations

import collections
import json
import os
from typing import Mapping, Sequence

import tensorflow as tf

from vcaption import text
from vcaption.retrieval.alignment_metrics import load_scenes, object_mentions

ARTICLES = ("a", "an", "the")


def _read_json(path: str):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _caption_files(world: str) -> list[str]:
    """The world's COCO caption files (`annotations/captions_*.json`), in name order."""
    directory = os.path.join(world, "annotations")
    return [os.path.join(directory, name) for name in sorted(tf.io.gfile.listdir(directory))
            if name.startswith("captions_")]


def world_image_paths(world: str) -> tuple[dict[str, str], dict[str, str]]:
    """(image id -> file, image id -> split) from the world's COCO caption files (the ids of the
    ranker's records)."""
    paths, splits = {}, {}
    for path in _caption_files(world):
        split = os.path.basename(path).rsplit("_", 1)[1].split(".")[0]
        for image in _read_json(path)["images"]:
            paths[str(image["id"])] = os.path.join(world, "images", image["file_name"])
            splits[str(image["id"])] = split
    if not paths:
        raise ValueError(f"{world}/annotations: no captions_*.json with images")
    return paths, splits


def annotated_regions(world: str, image_ids: Sequence[str]) -> list[dict]:
    """The world's Visual Genome region annotations (phrase per object box) of `image_ids`, in that order."""
    annotations = _read_json(os.path.join(world, "visual_genome", "region_descriptions.json"))
    by_id = {str(e["id"]): e for e in annotations}
    missing = [i for i in image_ids if i not in by_id]
    if missing:
        raise ValueError(f"{world}/visual_genome/region_descriptions.json has no regions for images "
                         f"{missing[:5]}")
    return [by_id[i] for i in image_ids]


def sentence_phrases(tokens: Sequence[str], objects: Sequence[Mapping]) -> list[tuple[str, tuple]]:
    """[(phrase, object box)] for every phrase of a ground-truth sentence that names exactly one
    object ("[size] colour shape", `alignment_metrics.object_mentions`), with its article.

    Example:
        >>> sentence_phrases("a big red ball on the left".split(), [{"shape": "circle", "colour": "red",
        ...     "size": "large", "box": [1, 2, 3, 3]}])
        [('a big red ball', (1, 2, 3, 3))]
    """
    out = []
    for positions, k in object_mentions(tokens, objects):
        start = positions[0]
        if start > 0 and tokens[start - 1] in ARTICLES:
            start -= 1
        out.append((" ".join(tokens[start:positions[-1] + 1]), tuple(int(v) for v in objects[k]["box"])))
    return out


def region_references(world: str, image_ids: Sequence[str]) -> list[dict]:
    """Region annotations with several references: each object's Visual Genome phrase ("small red
    circle") plus the phrases that name it in its image's ground-truth sentences ("a tiny red
    circle", "a red ball"), located by the generator's known object attributes (scenes.json), as
    Visual Genome images. Objects no sentence names alone keep their one phrase."""
    scenes = load_scenes(os.path.join(world, "scenes.json"))
    sentences = collections.defaultdict(list)
    for path in _caption_files(world):
        for annotation in _read_json(path)["annotations"]:
            sentences[str(annotation["image_id"])].append(annotation["caption"])
    entries = annotated_regions(world, image_ids)
    for entry in entries:
        image_id = str(entry["id"])
        objects = scenes[image_id]["objects"]
        for caption in sentences[image_id]:
            for phrase, (x, y, w, h) in sentence_phrases(text.normalized_caption(caption).split(), objects):
                entry["regions"].append({"image_id": entry["id"], "x": x, "y": y, "width": w, "height": h,
                                         "phrase": phrase})
    return entries
