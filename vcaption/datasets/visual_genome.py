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
"""

from __future__ import annotations

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
