"""Reader for MS-COCO caption annotations, with object boxes from the instance annotations.

Format (Lin et al., "Microsoft COCO: Common Objects in Context", ECCV 2014; Chen et al., "Microsoft
COCO Captions", arXiv:1504.00325; https://cocodataset.org/#format-data), e.g.
`annotations/captions_val2017.json`:

```json
{"images": [{"id": 397133, "file_name": "000000397133.jpg", "width": 640, "height": 427, ...}],
 "annotations": [{"id": 370509, "image_id": 397133, "caption": "A man is in a kitchen making pizzas."}]}
```

and, next to it, `annotations/instances_val2017.json` (boxes are [x, y, width, height] in pixels):

```json
{"images": [...],
 "annotations": [{"id": 1768, "image_id": 397133, "bbox": [388.66, 69.92, 109.41, 277.62],
                  "category_id": 1, ...}],
 "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}
```

The split comes from the file's subtype ("train2017", "val2014", ...); images are looked up as
`<images>/<subtype>/<file_name>` (the published layout `train2017/000000000009.jpg`), then
`<images>/<file_name>`.
"""

from __future__ import annotations

import collections
import os

import tensorflow as tf

from vcaption.datasets._common import (
    ImageDir, SeenIds, expand_inputs, field_problem, media_problem, name_problem, with_captions)
from vcaption.datasets.base import (
    MALFORMED_ENTRY, REGION_INVALID, UNKNOWN_IMAGE, UNKNOWN_SPLIT, CaptionedImage, DeadLetter, Region,
    ReaderOutput, join_path, load_json, parent_dir, split_from_subtype)

_ID = (int, str)
_NUMBER = (int, float)


def read(input_path: str, images_dir: str | None = None, *, split: str | None = None,
         instances_path: str | None = None, with_instances: bool = True) -> ReaderOutput:
    """Yields a `CaptionedImage` per listed image (captions, and regions when instances exist).

    Args:
        input_path: a `captions_*.json` file, a comma-separated list of them, a glob
            (`annotations/captions_*2017.json`), or the annotations directory (all `captions_*.json`).
        images_dir: the directory holding `<subtype>/<file_name>` or `<file_name>`. Defaults to the
            annotations directory's parent, then `<parent>/images`.
        split: "train", "val" or "test" for every file, instead of the one in the file's subtype.
        instances_path: the instance annotations to take regions from (one captions file only).
            Defaults to the captions file with "captions_" replaced by "instances_", when it exists.
        with_instances: False ignores instance annotations.

    Example:
        >>> examples = list(read("coco/annotations/captions_val2017.json"))
        >>> examples[0].image_path, examples[0].regions[0].category
        ('coco/val2017/000000397133.jpg', 'person')
    """
    paths = expand_inputs(input_path, "COCO captions file", directory_pattern="captions_*.json")
    if instances_path and len(paths) > 1:
        raise ValueError(f"instances_path={instances_path!r} is ambiguous with {len(paths)} captions files")
    image_ids, caption_ids = SeenIds("image"), SeenIds("caption")
    for path in paths:
        root = parent_dir(parent_dir(path))  # the published layout: <root>/annotations/captions_*.json
        images = ImageDir(images_dir, [root, join_path(root, "images")])
        instances = (instances_path or _instances_next_to(path)) if with_instances else None
        yield from _file(path, images, split, instances, image_ids, caption_ids)


def _subtype(path: str) -> str:
    """"train2017" from ".../captions_train2017.json" (the name without prefix and extension)."""
    name = os.path.basename(path)
    name = name.split("captions_", 1)[-1]
    return name[: -len(".json")] if name.endswith(".json") else name


def _instances_next_to(path: str) -> str | None:
    name = os.path.basename(path)
    if "captions_" not in name:
        return None
    candidate = join_path(parent_dir(path), name.replace("captions_", "instances_", 1))
    return candidate if tf.io.gfile.exists(candidate) else None


def _file(path: str, images: ImageDir, split: str | None, instances_path: str | None,
          image_ids: SeenIds, caption_ids: SeenIds) -> ReaderOutput:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: not a COCO captions file (needs 'images' and 'annotations' lists)")
    subtype = _subtype(path)
    file_split = split or split_from_subtype(subtype)

    listed = {}  # image id -> image entry, in published order
    for index, entry in enumerate(data["images"]):
        where = f"{path}: images[{index}]"
        problem = field_problem(entry, {"id": _ID, "file_name": str})
        if problem:
            yield DeadLetter(where, "image", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        id = str(entry["id"])
        dead = (name_problem(id, "image", "id", where, path)
                or name_problem(entry["file_name"], "image", "file_name", where, path)
                or image_ids.duplicate(id, f"{where} ({id})", path)
                or media_problem([entry["file_name"]], id, "image", where, path))
        if dead:
            yield dead
            continue
        listed[id] = entry

    captions = collections.defaultdict(list)  # image id -> (caption id, text, where)
    for index, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        problem = field_problem(entry, {"id": _ID, "image_id": _ID, "caption": object})
        if problem:
            yield DeadLetter(where, "caption", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        caption_id, image_id = str(entry["id"]), str(entry["image_id"])
        duplicate = caption_ids.duplicate(caption_id, where, path)
        if duplicate:
            yield duplicate
        elif image_id not in listed:
            yield DeadLetter(caption_id, "caption", UNKNOWN_IMAGE,
                             f"{where}: caption for image id {image_id} that 'images' does not list", path)
        else:
            captions[image_id].append((caption_id, entry["caption"], f"{where} (id {caption_id})"))

    regions = collections.defaultdict(list)
    if instances_path:
        for item in _regions(instances_path, listed):
            if isinstance(item, DeadLetter):
                yield item
            else:
                regions[item[0]].append(item[1])

    for id, entry in listed.items():
        where = f"{path}: image {id} ({entry['file_name']})"
        if file_split is None:
            yield DeadLetter(id, "image", UNKNOWN_SPLIT,
                             f"{where}: no split in subtype {subtype!r}; pass split=", path)
            continue
        relatives = (join_path(subtype, entry["file_name"]), entry["file_name"])
        yield from with_captions(
            id, "image", captions.get(id, ()), where, path,
            lambda kept, ids: CaptionedImage(id, file_split, images.path(*relatives), kept,
                                             tuple(regions.get(id, ())), source=path, caption_ids=ids))


def _regions(path: str, listed: dict):
    """(image id, Region) per valid instance annotation of a listed image, or DeadLetter."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: not a COCO instances file (no 'annotations' list)")
    names = {c["id"]: c["name"] for c in data.get("categories", ())
             if isinstance(c, dict) and "id" in c and isinstance(c.get("name"), str)}
    for index, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        problem = field_problem(entry, {"id": _ID, "image_id": _ID, "bbox": list, "category_id": _ID})
        if not problem and (len(entry["bbox"]) != 4 or not all(
                isinstance(v, _NUMBER) and not isinstance(v, bool) for v in entry["bbox"])):
            problem = f"bbox {entry['bbox']!r} is not [x, y, width, height]"
        if not problem and entry["category_id"] not in names:
            problem = f"category_id {entry['category_id']!r} is not in 'categories'"
        if problem:
            yield DeadLetter(where, "region", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        region_id, image_id = str(entry["id"]), str(entry["image_id"])
        x, y, w, h = (float(v) for v in entry["bbox"])
        if image_id not in listed:
            yield DeadLetter(region_id, "region", UNKNOWN_IMAGE,
                             f"{where}: box for image id {image_id} that the captions file does not list",
                             path)
        elif w <= 0 or h <= 0:
            yield DeadLetter(region_id, "region", REGION_INVALID,
                             f"{where}: bbox {entry['bbox']} has non-positive width or height", path)
        else:
            name = names[entry["category_id"]]
            yield image_id, Region((x, y, w, h), phrase=name, category=name, id=region_id)
