"""Reader for video description corpora: MSR-VTT annotations and MSVD-style caption maps.

(a) MSR-VTT (Xu et al., "MSR-VTT: A Large Video Description Dataset", CVPR 2016;
`train_val_videodatainfo.json` / `videodatainfo.json`), with `category.txt` next to it (lines
`<name><TAB><category id>`, e.g. `music	0`) naming the 20 categories:

```json
{"videos": [{"video_id": "video0", "category": 9, "split": "train", "url": "...",
             "start time": 137.72, "end time": 149.44, "id": 0}],
 "sentences": [{"video_id": "video0", "caption": "a car is shown", "sen_id": 0}]}
```

(b) MSVD (Chen & Dolan, "Collecting Highly Parallel Data for Paraphrase Evaluation", ACL 2011) as
the caption map commonly distributed with video-captioning code, `{video id: [captions]}`:

```json
{"-4wsuPCjDBc_5_15": ["a squirrel is eating a peanut in it's shell", "a chipmunk is eating"]}
```

MSVD has no split in this form: option `split`, else a stable hash of the id (80/10/10). Videos are
`<videos>/<video id>.{avi,mp4,webm,mkv}` (MSVD's `YouTubeClips/*.avi`, MSR-VTT's `video0.mp4`).
"""

from __future__ import annotations

import collections

import tensorflow as tf

from vcaption.datasets._common import ImageDir, SeenIds, field_problem, name_problem, printable, with_captions
from vcaption.datasets.base import (
    MALFORMED_ENTRY, UNKNOWN_IMAGE, UNKNOWN_SPLIT, DeadLetter, ReaderOutput, VideoExample,
    canonical_split, hash_split, join_path, load_json, parent_dir, read_lines)

_EXTENSIONS = ("avi", "mp4", "webm", "mkv")


def read(input_path: str, images_dir: str | None = None, *, split: str | None = None,
         category_path: str | None = None) -> ReaderOutput:
    """Yields a `VideoExample` per video with at least one valid caption, or dead letters.

    Args:
        input_path: an MSR-VTT `videodatainfo.json` or an MSVD-style `{video id: [captions]}` JSON.
        images_dir: the videos directory. Defaults to `videos/` next to the JSON, then the
            published folder names `YouTubeClips/` (MSVD), `TrainValVideo/` and `TestVideo/` (MSR-VTT).
        split: the split of every video of an MSVD-style map ("train", "val", "test").
        category_path: MSR-VTT category names; defaults to `category.txt` next to the JSON. Without
            it, a video's label is its category number as a string.

    Example:
        >>> for example in read("msrvtt/videodatainfo.json"):
        ...     print(example.id, example.label, example.video_path, example.captions[0])
    """
    directory = parent_dir(input_path)
    videos = ImageDir(images_dir, [join_path(directory, name)
                                   for name in ("videos", "YouTubeClips", "TrainValVideo", "TestVideo")])
    data = load_json(input_path)
    if isinstance(data, dict) and isinstance(data.get("videos"), list) \
            and isinstance(data.get("sentences"), list):
        labels = _categories(category_path or join_path(directory, "category.txt"),
                             explicit=bool(category_path))
        yield from _msrvtt(data, input_path, videos, labels)
    elif isinstance(data, dict) and "videos" not in data:
        if split is not None and canonical_split(split) is None:
            raise ValueError(f"split={split!r}: use train, val or test")
        yield from _caption_map(data, input_path, videos, split and canonical_split(split))
    else:
        raise ValueError(f"{input_path}: neither MSR-VTT ('videos' and 'sentences' lists) nor a "
                         "{video id: [captions]} map")


def _msrvtt(data: dict, path: str, videos: ImageDir, labels: dict[str, str]) -> ReaderOutput:
    listed = collections.OrderedDict()  # video id -> (split, label, where)
    seen = SeenIds("video")
    for index, entry in enumerate(data["videos"]):
        where = f"{path}: videos[{index}]"
        problem = field_problem(entry, {"video_id": str, "split": str})
        if problem:
            yield DeadLetter(where, "video", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        id = entry["video_id"]
        where = f"{where} ({printable(id)})"
        dead = name_problem(id, "video", "video id", where, path) or seen.duplicate(id, where, path)
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
        yield from _video(id, split, label, captions.get(id, ()), where, path, videos)


def _caption_map(data: dict, path: str, videos: ImageDir, split: str | None) -> ReaderOutput:
    # JSON objects cannot repeat a key usefully (json keeps the last), so there is nothing to dedupe.
    for id, texts in data.items():
        where = f"{path}: {printable(id)!r}"
        dead = name_problem(id, "video", "video id", where, path)
        if not dead and not isinstance(texts, list):
            dead = DeadLetter(id, "video", MALFORMED_ENTRY,
                              f"{where}: captions are a {type(texts).__name__}, not a list", path)
        if dead:
            yield dead
            continue
        captions = [(f"{id}#{k}", text, f"{where}[{k}]") for k, text in enumerate(texts)]
        yield from _video(id, split or hash_split(id), "", captions, where, path, videos)


def _video(id, split, label, captions, where, path, videos: ImageDir) -> ReaderOutput:
    yield from with_captions(
        id, "video", captions, where, path,
        lambda kept: VideoExample(id, split, videos.path(*(f"{id}.{ext}" for ext in _EXTENSIONS)), kept,
                                  label=label, source=path))


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
