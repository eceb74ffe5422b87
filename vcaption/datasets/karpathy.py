"""Reader for the Karpathy split files of Flickr8k, Flickr30k and MS-COCO.

Format (Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments", CVPR 2015; the files
`dataset_flickr8k.json`, `dataset_flickr30k.json`, `dataset_coco.json` published with NeuralTalk,
https://cs.stanford.edu/people/karpathy/deepimagesent/):

```json
{"dataset": "coco",
 "images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
             "imgid": 0, "cocoid": 391895, "split": "test", "sentids": [770337, ...],
             "sentences": [{"raw": "A man with a red helmet on a small moped on a dirt road. ",
                            "tokens": ["a", "man", "with", ...], "imgid": 0, "sentid": 770337}]}]}
```

`filepath` and `cocoid` exist in the COCO file only. The same image objects, one per line, are read
from JSON Lines (`.jsonl`), where a line that does not parse is dead-lettered rather than fatal.
"""

from __future__ import annotations

import json

from vcaption.datasets._common import (
    ImageDir, SeenIds, field_problem, media_problem, name_problem, printable, with_captions)
from vcaption.datasets.base import (
    MALFORMED_ENTRY, MALFORMED_JSON, UNKNOWN_SPLIT, CaptionedImage, DeadLetter, ReaderOutput,
    canonical_split, join_path, load_json, parent_dir, read_lines)


def read(input_path: str, images_dir: str | None = None) -> ReaderOutput:
    """Yields a `CaptionedImage` per image object, or dead letters.

    Args:
        input_path: a Karpathy split JSON file, or a `.jsonl` file of the same image objects.
        images_dir: the directory that `filepath/filename` is relative to. Defaults to the JSON's
            directory (or its `images/` subdirectory when that is where the first image is).

    Example:
        >>> for example in read("data/dataset_flickr8k.json", "data/Flicker8k_Dataset"):
        ...     print(example.id, example.split, example.captions[0])
    """
    directory = parent_dir(input_path)
    images = ImageDir(images_dir, [directory, join_path(directory, "images")])
    seen = SeenIds("image")
    if input_path.endswith(".jsonl"):
        for number, line in read_lines(input_path):
            if not line.strip():
                continue  # a blank line (often the last one) is layout, not an input
            where = f"{input_path}:{number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                yield DeadLetter(where, "line", MALFORMED_JSON, f"{where}: not valid JSON ({error.msg})",
                                 input_path)
                continue
            yield from _image(entry, where, input_path, images, seen)
        return
    data = load_json(input_path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{input_path}: not a Karpathy split file (no 'images' list at the top level)")
    for index, entry in enumerate(data["images"]):
        yield from _image(entry, f"{input_path}: images[{index}]", input_path, images, seen)


def _image(entry, where: str, source: str, images: ImageDir, seen: SeenIds) -> ReaderOutput:
    problem = field_problem(entry, {"filename": str, "split": str, "sentences": list})
    if not problem and not isinstance(entry.get("filepath", ""), (str, type(None))):
        problem = f"field 'filepath' is {type(entry['filepath']).__name__}, not a string"
    if problem:
        yield DeadLetter(where, "image", MALFORMED_ENTRY, f"{where}: {problem}", source)
        return
    filename = entry["filename"]
    id = str(entry["cocoid"]) if entry.get("cocoid") is not None else filename
    relative = join_path(entry["filepath"], filename) if entry.get("filepath") else filename
    dead = (name_problem(f"{entry.get('filepath') or ''}/{filename}", "image", "file path", where, source)
            or seen.duplicate(id, f"{where} ({printable(id)})", source)
            or media_problem([relative], id, "image", where, source))
    if dead:
        yield dead
        return
    where = f"{where} ({id})"
    split = canonical_split(entry["split"])
    if split is None:
        yield DeadLetter(id, "image", UNKNOWN_SPLIT, f"{where}: unknown split {entry['split']!r}", source)
        return
    captions = ((f"{id}#{k}", _sentence_text(s), f"{where}: sentences[{k}]")
                for k, s in enumerate(entry["sentences"]))
    yield from with_captions(
        id, "image", captions, where, source,
        lambda kept, ids: CaptionedImage(id, split, images.path(relative), kept, source=source,
                                         caption_ids=ids))


def _sentence_text(sentence) -> object:
    """The published "raw" text; the tokens joined when raw is absent; else the malformed value."""
    if isinstance(sentence, dict):
        if "raw" in sentence:
            return sentence["raw"]
        tokens = sentence.get("tokens")
        if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
            return " ".join(tokens)
    return sentence
