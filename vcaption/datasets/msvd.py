"""Reader for video description corpora: MSR-VTT annotations and the MSVD caption releases.

(a) MSR-VTT (Xu et al., "MSR-VTT: A Large Video Description Dataset", CVPR 2016;
`train_val_videodatainfo.json` / `videodatainfo.json`), with `category.txt` next to it (lines
`<name><TAB><category id>`, e.g. `music	0`) naming the 20 categories:

```json
{"videos": [{"video_id": "video0", "category": 9, "split": "train", "url": "...",
             "start time": 137.72, "end time": 149.44, "id": 0}],
 "sentences": [{"video_id": "video0", "caption": "a car is shown", "sen_id": 0}]}
```

(b) MSVD (Chen & Dolan, "Collecting Highly Parallel Data for Paraphrase Evaluation", ACL 2011) in
the two forms its widely used caption releases take: a list with one entry per clip file, usually one
file per split (`train.json`, `val.json`, `test.json`),

```json
[{"id": "-4wsuPCjDBc_5_15.avi", "caption": ["a squirrel is eating a peanut in it's shell", "a chipmunk is eating"]}]
```

or the caption map commonly distributed with video-captioning code, `{video id: [captions]}`:

```json
{"-4wsuPCjDBc_5_15": ["a squirrel is eating a peanut in it's shell", "a chipmunk is eating"]}
```

A clip's id is its file name without the video extension, in both forms, so the same clip has the
same id whichever form it comes from. MSVD has no split field: option `split`, else the split named by
a word of the file name (`msvd_train.json`, `val.json`, `test.json`), else a stable hash of the id
(80/10/10). Several files (a comma-separated list or a glob: `msvd/train.json,msvd/val.json,...`)
make one dataset, with ids unique across them. Videos are `<videos>/<file name>` for the list form,
`<videos>/<video id>.{avi,mp4,webm,mkv}` otherwise (MSVD's `YouTubeClips/*.avi`, MSR-VTT's
`video0.mp4`); a name that would leave `<videos>` is dead-lettered, never read.
"""

from __future__ import annotations

import collections
import os
import re

import tensorflow as tf

from vcaption.datasets._common import (
    ImageDir, SeenIds, expand_inputs, field_problem, media_problem, name_problem, printable, with_captions)
from vcaption.datasets.base import (
    MALFORMED_ENTRY, UNKNOWN_IMAGE, UNKNOWN_SPLIT, DeadLetter, ReaderOutput, VideoExample,
    canonical_split, hash_split, join_path, load_json, parent_dir, read_lines)

_EXTENSIONS = ("avi", "mp4", "webm", "mkv")


def read(input_path: str, images_dir: str | None = None, *, split: str | None = None,
         category_path: str | None = None) -> ReaderOutput:
    """Yields a `VideoExample` per video with at least one valid caption, or dead letters.

    Args:
        input_path: an MSR-VTT `videodatainfo.json`, an MSVD list `[{"id", "caption"}]` or an
            MSVD-style `{video id: [captions]}` JSON; or several of them, comma-separated or as a glob.
        images_dir: the videos directory. Defaults to `videos/` next to the JSON, then the
            published folder names `YouTubeClips/` (MSVD), `TrainValVideo/` and `TestVideo/` (MSR-VTT).
        split: the split of every video of an MSVD file ("train", "val", "test"), instead of the
            one its file name names (or the hash).
        category_path: MSR-VTT category names; defaults to `category.txt` next to the JSON. Without
            it, a video's label is its category number as a string.

    Example:
        >>> for example in read("msrvtt/videodatainfo.json"):
        ...     print(example.id, example.label, example.video_path, example.captions[0])
        >>> examples = list(read("msvd/train.json,msvd/val.json,msvd/test.json", "msvd/YouTubeClips"))
    """
    if split is not None and canonical_split(split) is None:
        raise ValueError(f"split={split!r}: use train, val or test")
    seen = SeenIds("video")  # one dataset: a video id is unique across all the files
    for path in expand_inputs(input_path, "video annotation file"):
        directory = parent_dir(path)
        videos = ImageDir(images_dir, [join_path(directory, name)
                                       for name in ("videos", "YouTubeClips", "TrainValVideo", "TestVideo")])
        data = load_json(path)
        msvd_split = canonical_split(split) if split is not None else _split_in_name(path)
        if isinstance(data, dict) and isinstance(data.get("videos"), list) \
                and isinstance(data.get("sentences"), list):
            labels = _categories(category_path or join_path(directory, "category.txt"),
                                 explicit=bool(category_path))
            yield from _msrvtt(data, path, videos, labels, seen)
        elif isinstance(data, dict) and "videos" not in data:
            yield from _caption_map(data, path, videos, msvd_split, seen)
        elif isinstance(data, list):
            yield from _clip_list(data, path, videos, msvd_split, seen)
        else:
            raise ValueError(f"{path}: neither MSR-VTT ('videos' and 'sentences' lists), an MSVD list "
                             "[{'id': '<clip>.avi', 'caption': [captions]}] nor a {video id: [captions]} map")


def _split_in_name(path: str) -> str | None:
    """The split a word of the file name names ("msvd_test.json" -> test), else None."""
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    return next(filter(None, (canonical_split(word) for word in re.split(r"[^a-z]+", stem) if word)), None)


def _msrvtt(data: dict, path: str, videos: ImageDir, labels: dict[str, str], seen: SeenIds) -> ReaderOutput:
    listed = collections.OrderedDict()  # video id -> (split, label, where)
    for index, entry in enumerate(data["videos"]):
        where = f"{path}: videos[{index}]"
        problem = field_problem(entry, {"video_id": str, "split": str})
        if problem:
            yield DeadLetter(where, "video", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        id = entry["video_id"]
        where = f"{where} ({printable(id)})"
        dead = _video_problem(id, id, _candidates(id), where, path, seen)
        split = canonical_split(entry["split"])
        if not dead and split is None:
            dead = DeadLetter(id, "video", UNKNOWN_SPLIT, f"{where}: unknown split {entry['split']!r}", path)
        if dead:
            yield dead
            continue
        category = entry.get("category")
        label = "" if category is None else labels.get(str(category), str(category))
        listed[id] = (split, label, where)

    captions = collections.defaultdict(list)
    for index, entry in enumerate(data["sentences"]):
        where = f"{path}: sentences[{index}]"
        problem = field_problem(entry, {"video_id": str, "caption": object})
        if problem:
            yield DeadLetter(where, "caption", MALFORMED_ENTRY, f"{where}: {problem}", path)
        elif entry["video_id"] not in listed:
            yield DeadLetter(str(entry.get("sen_id", where)), "caption", UNKNOWN_IMAGE,
                             f"{where}: caption for video {printable(entry['video_id'])!r} that 'videos' "
                             "does not list", path)
        else:
            caption_id = str(entry.get("sen_id", f"{entry['video_id']}#{len(captions[entry['video_id']])}"))
            captions[entry["video_id"]].append((caption_id, entry["caption"], where))

    for id, (split, label, where) in listed.items():
        yield from _video(id, split, label, captions.get(id, ()), where, path, videos, _candidates(id))


def _caption_map(data: dict, path: str, videos: ImageDir, split: str | None, seen: SeenIds) -> ReaderOutput:
    for id, texts in data.items():
        where = f"{path}: {printable(id)!r}"
        dead = _video_problem(id, id, _candidates(id), where, path, seen)
        if not dead and not isinstance(texts, list):
            dead = DeadLetter(id, "video", MALFORMED_ENTRY,
                              f"{where}: captions are a {type(texts).__name__}, not a list", path)
        if dead:
            yield dead
            continue
        captions = [(f"{id}#{k}", text, f"{where}[{k}]") for k, text in enumerate(texts)]
        yield from _video(id, split or hash_split(id), "", captions, where, path, videos, _candidates(id))


def _clip_list(data: list, path: str, videos: ImageDir, split: str | None, seen: SeenIds) -> ReaderOutput:
    for index, entry in enumerate(data):
        where = f"{path}: [{index}]"
        problem = field_problem(entry, {"id": str, "caption": list})
        if problem:
            yield DeadLetter(where, "video", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        name = entry["id"]
        stem, extension = os.path.splitext(name)
        # "<clip>.avi" names the file; a bare "<clip>" is looked up with each video extension.
        id, files = (stem, (name,)) if extension[1:].lower() in _EXTENSIONS else (name, _candidates(name))
        where = f"{where} ({printable(name)})"
        dead = _video_problem(id, name, files, where, path, seen)
        if dead:
            yield dead
            continue
        captions = [(f"{id}#{k}", text, f"{where}: caption[{k}]") for k, text in enumerate(entry["caption"])]
        yield from _video(id, split or hash_split(id), "", captions, where, path, videos, files)


def _video_problem(id: str, name: str, files, where: str, path: str, seen: SeenIds) -> DeadLetter | None:
    """The checks every video goes through: a UTF-8 name, an id not seen before, file names that
    stay in the videos directory."""
    return (name_problem(name, "video", "video id", where, path) or seen.duplicate(id, where, path)
            or media_problem(files, id, "video", where, path))


def _candidates(id: str) -> tuple[str, ...]:
    return tuple(f"{id}.{ext}" for ext in _EXTENSIONS)


def _video(id, split, label, captions, where, path, videos: ImageDir, files) -> ReaderOutput:
    yield from with_captions(
        id, "video", captions, where, path,
        lambda kept, ids: VideoExample(id, split, videos.path(*files), kept, label=label, source=path,
                                       caption_ids=ids))


def _categories(path: str, explicit: bool) -> dict[str, str]:
    """{category id: name} from MSR-VTT's `category.txt`; {} when the file is absent."""
    if not explicit and not tf.io.gfile.exists(path):
        return {}
    names = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        # Names may hold spaces ("tv shows"); the id is the last field.
        parts = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise ValueError(f"{path}:{number}: expected '<name><TAB><category id>', got {printable(line)!r}")
        names[parts[1].strip()] = parts[0].strip()
    return names
