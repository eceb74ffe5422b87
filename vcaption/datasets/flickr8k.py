"""Reader for the Flickr8k token file (and Flickr30k's, which has the same line format).

Format (Hodosh, Young & Hockenmaier, "Framing Image Description as a Ranking Task", JAIR 2013,
`Flickr8k_text.zip`: `Flickr8k.token.txt`): one caption per line, `<file name>#<k><TAB><caption>`,
five per image:

```text
1000268201_693b08cb0e.jpg#0	A child in a pink dress is climbing up a set of stairs in an entry way .
1000268201_693b08cb0e.jpg#1	A girl going into a wooden building .
```

The splits are the file lists next to it, one file name per line: `Flickr_8k.trainImages.txt`,
`Flickr_8k.devImages.txt` (-> val) and `Flickr_8k.testImages.txt`. Images are in
`Flicker8k_Dataset/` (sic, the spelling of the published `Flickr8k_Dataset.zip`).

Flickr30k (Young et al., TACL 2014) publishes `results_20130124.token` in the same line format but
without split files: pass `split_files=` (or use its Karpathy split file with `karpathy.py`).
"""

from __future__ import annotations

import collections
import re
from typing import Mapping

import tensorflow as tf

from vcaption.datasets._common import ImageDir, SeenIds, media_problem, printable, with_captions
from vcaption.datasets.base import (
    INVALID_UTF8, MALFORMED_LINE, NO_VALID_CAPTIONS, UNKNOWN_SPLIT, CaptionedImage, DeadLetter, ReaderOutput,
    canonical_split, join_path, parent_dir, read_lines)
from vcaption.text import has_invalid_utf8

_LINE = re.compile(r"(?P<name>[^\t#]+)#(?P<k>\d+)\t(?P<caption>.*)")
# Published split-list names, e.g. Flickr_8k.devImages.txt; "dev" is the validation split.
_SPLIT_PATTERNS = {"*trainImages.txt": "train", "*devImages.txt": "val", "*valImages.txt": "val",
                   "*testImages.txt": "test", "*testNovelImages.txt": "test_novel"}


def read(input_path: str, images_dir: str | None = None, *,
         split_files: Mapping[str, str] | str | None = None) -> ReaderOutput:
    """Yields a `CaptionedImage` per image of the token file, grouped in first-seen order.

    Args:
        input_path: `Flickr8k.token.txt` (or Flickr30k's `results_20130124.token`), or the directory
            holding the one `*.token.txt` / `*.token` file.
        images_dir: the image directory. Defaults to the first of `Flicker8k_Dataset/`,
            `Flickr8k_Dataset/`, `flickr30k-images/` next to the token file, or `../images`.
        split_files: {split: file of image names}, or the string "train=a.txt,val=b.txt". Defaults
            to the `*trainImages.txt`, `*devImages.txt`, `*testImages.txt` files next to the token
            file. Images in no split file are dead-lettered (UNKNOWN_SPLIT).

    Example:
        >>> examples = list(read("Flickr8k_text/Flickr8k.token.txt", "Flicker8k_Dataset"))
    """
    input_path = _token_file(input_path)
    directory = parent_dir(input_path)
    split_of, listed_in = _load_splits(directory, split_files)
    images = ImageDir(images_dir, [join_path(directory, "Flicker8k_Dataset"),
                                   join_path(directory, "Flickr8k_Dataset"),
                                   join_path(directory, "flickr30k-images"),
                                   join_path(parent_dir(directory), "images")])
    caption_ids = SeenIds("caption")
    grouped = collections.OrderedDict()  # file name -> [(caption id, text, where)]
    for number, line in read_lines(input_path):
        if not line.strip():
            continue  # a blank line (often the last one) is layout, not an input
        where = f"{input_path}:{number}"
        match = _LINE.fullmatch(line)
        if not match:
            got = printable(line)[:80]
            yield DeadLetter(where, "line", MALFORMED_LINE,
                             f"{where}: expected '<file name>#<k><TAB><caption>', got {got!r}", input_path)
            continue
        name, caption_id = match["name"], f"{match['name']}#{match['k']}"
        if has_invalid_utf8(name):
            yield DeadLetter(where, "line", INVALID_UTF8, f"{where}: file name is not UTF-8", input_path)
            continue
        unsafe = media_problem([name], where, "line", where, input_path)
        if unsafe:
            yield unsafe
            continue
        duplicate = caption_ids.duplicate(caption_id, where, input_path)
        if duplicate:
            yield duplicate
            continue
        grouped.setdefault(name, []).append((caption_id, match["caption"], where))

    for name, captions in grouped.items():
        where = f"{input_path}: image {name}"
        split = split_of.get(name)
        if split is None:
            yield DeadLetter(name, "image", UNKNOWN_SPLIT, f"{where}: in no split file", input_path)
            continue
        yield from with_captions(name, "image", captions, where, input_path,
                                 lambda kept, ids: CaptionedImage(name, split, images.path(name), kept,
                                                                  source=input_path, caption_ids=ids))
    # A split file is an input too: an image it lists that has no caption line must not vanish.
    for name, split_file in listed_in.items():
        if name not in grouped:
            yield DeadLetter(name, "image", NO_VALID_CAPTIONS,
                             f"{split_file}: lists {name} but {input_path} has no caption for it", split_file)


def _token_file(input_path: str) -> str:
    if not tf.io.gfile.isdir(input_path):
        return input_path
    found = [path for pattern in ("*.token.txt", "*.token")
             for path in tf.io.gfile.glob(join_path(input_path, pattern))
             if ".lemma." not in path]  # Flickr8k.lemma.token.txt holds lemmatized copies of the captions
    if len(found) != 1:
        raise ValueError(f"{input_path}: expected one *.token.txt or *.token file, found {sorted(found)}")
    return found[0]


def _load_splits(directory: str, split_files) -> tuple[dict[str, str], dict[str, str]]:
    """({file name: split}, {file name: split file listing it}); the first listing wins."""
    files = _split_files(directory, split_files)
    if not files:
        raise ValueError(
            f"no split files (*trainImages.txt, *devImages.txt, *testImages.txt) in {directory}: pass "
            "split_files={'train': ..., 'val': ..., 'test': ...} (Flickr30k publishes none)")
    split_of, listed_in = {}, {}
    for path, split in files:
        for _, line in read_lines(path):
            name = line.strip()
            if name and name not in split_of:
                split_of[name], listed_in[name] = split, path
    return split_of, listed_in


def _split_files(directory: str, split_files) -> list[tuple[str, str]]:
    """[(path, canonical split)] from the option, else from the published names in `directory`."""
    if split_files is None:
        found = []
        for pattern, split in _SPLIT_PATTERNS.items():
            found += [(p, split) for p in sorted(tf.io.gfile.glob(join_path(directory, pattern)))]
        return found
    if isinstance(split_files, str):
        pairs = [part.split("=", 1) for part in split_files.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"split_files={split_files!r}: expected 'train=path,val=path,test=path'")
        split_files = dict(pairs)
    files = []
    for name, path in split_files.items():
        split = canonical_split(name.strip())
        if split is None:
            raise ValueError(f"split_files: unknown split {name!r}; use train, val or test")
        path = path.strip()
        # A bare name like "Flickr_8k.trainImages.txt" is taken next to the token file.
        files.append((path if tf.io.gfile.exists(path) else join_path(directory, path), split))
    return files
