"""Tests of the shapes world generator: truth of the text, geometry, videos and the file formats."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from vcaption import text
from vcaption.datasets import shapes

PLAIN_SPLITS = ("train", "val", "test")  # a world without a novel split
SMALL = dict(num_images=12, num_videos=3, image_size=64, video_size=32, num_frames=16)
SHAPE_WORDS = {"circle": "circle", "ball": "circle", "square": "square", "box": "square",
               "triangle": "triangle", "diamond": "diamond"}
SIZE_WORDS = {"large": "large", "big": "large", "small": "small", "little": "small",
              "tiny": "small"}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4}
POSITION_TO_CELL = {phrase: cell for cell, phrase in shapes.POSITION_PHRASES.items()}


def _scenes(count: int, seed: int = 0):
    for index in range(count):
        rng = np.random.default_rng([seed, 99, index])
        yield shapes.sample_scene(rng), rng


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# Captions


def _caption_facts_hold(caption: str, scene: shapes.Scene) -> None:
    """Asserts that every colour, shape, size, position, count and relation the caption states holds."""
    objects = scene.objects
    words = re.sub(r"[^a-z ]", "", caption.lower()).split()
    colours = {o.colour for o in objects}
    kinds = {o.shape for o in objects}
    assert {w for w in words if w in shapes.COLOURS} <= colours, caption
    assert {SHAPE_WORDS[w] for w in words if w in SHAPE_WORDS} <= kinds, caption
    # Every "colour shape" pair names an object, with its size when one is given.
    said = " ".join(words)
    noun = r"(?:(\w+) )?(" + "|".join(shapes.COLOURS) + r") (" + "|".join(SHAPE_WORDS) + r")"
    mentions = re.findall(noun, said)
    assert mentions, f"no colour+shape in {caption!r}"
    for size, colour, shape in mentions:
        match = [o for o in objects if o.colour == colour and o.shape == SHAPE_WORDS[shape]
                 and (size not in SIZE_WORDS or o.size == SIZE_WORDS[size])]
        assert match, f"{size} {colour} {shape} is not in the scene: {caption!r}"
    positions = "|".join(sorted(POSITION_TO_CELL, key=len, reverse=True))
    for colour, shape, position in re.findall(
            r"(\w+) (\w+) (" + positions + r")(?= |$)", said):
        if colour in shapes.COLOURS:
            assert any(o.colour == colour and o.shape == SHAPE_WORDS[shape]
                       and o.cell == POSITION_TO_CELL[position] for o in objects), caption
    for number in re.findall(r"(\w+) shapes", said):
        assert NUMBER_WORDS[number] == len(objects), caption
    relation = re.search(noun + r" (?:is )?(above|below|(?:to the )?left of|(?:to the )?right of) "
                         r"an? " + noun, said)
    if relation:
        _, c1, s1, rel, _, c2, s2 = relation.groups()
        rel = rel.replace("to the ", "")
        firsts = [o for o in objects if (o.colour, o.shape) == (c1, SHAPE_WORDS[s1])]
        seconds = [o for o in objects if (o.colour, o.shape) == (c2, SHAPE_WORDS[s2])]
        assert any(a is not b and shapes.relations(a, b)[rel] for a in firsts for b in seconds), \
            caption


def test_captions_are_true_short_and_five():
    captions, scenes = [], []
    for scene, rng in _scenes(300):
        these = shapes.scene_captions(scene, rng)
        assert len(these) == 5
        for caption in these:
            _caption_facts_hold(caption, scene)
        captions += these
        scenes.append(scene)
    lengths = [len(t) for t in text.count_tokens(captions)]
    assert max(lengths) <= shapes.MAX_CAPTION_TOKENS
    assert lengths == [shapes.num_tokens(c) for c in captions]  # the budget helper agrees with TF


def test_canonical_caption_lists_objects_in_reading_order():
    scene = shapes.Scene((shapes.SceneObject("circle", "red", "large", 0, 0),
                          shapes.SceneObject("square", "blue", "small", 1, 1)))
    captions = shapes.scene_captions(scene, np.random.default_rng(0))
    assert captions[0] == "a large red circle in the top left and a small blue square in the center"
    one = shapes.Scene((shapes.SceneObject("triangle", "orange", "small", 2, 1),))
    assert shapes.scene_captions(one, np.random.default_rng(0))[0] == \
        "a small orange triangle at the bottom"


def test_generated_captions_in_karpathy_file(shapes_world):
    karpathy = _load(shapes_world / "dataset_shapes.json")
    truth = {s["id"]: s for s in _load(shapes_world / "scenes.json")["images"]}
    for image in karpathy["images"]:
        assert len(image["sentences"]) == 5
        raws = [s["raw"] for s in image["sentences"]]
        assert [s["tokens"] for s in image["sentences"]] == text.count_tokens(raws)
        objects = truth[image["cocoid"]]["objects"]
        for sentence in image["sentences"]:
            assert len(sentence["tokens"]) <= 16
            assert any(o["colour"] in sentence["tokens"] and
                       any(SHAPE_WORDS.get(t) == o["shape"] for t in sentence["tokens"])
                       for o in objects), sentence["raw"]


# ---------------------------------------------------------------------------------------------
# Geometry


def test_boxes_inside_image_and_cell_with_object_colour_at_centre():
    for image_size in (64, 128):
        for scene, _ in _scenes(100, seed=image_size):
            image = shapes.render_scene(scene, image_size)
            assert image.shape == (image_size, image_size, 3) and image.dtype == np.uint8
            drawn = np.zeros(image.shape[:2], bool)
            for obj in scene.objects:
                x, y, w, h = shapes.object_box(obj, image_size)
                x0, x1 = obj.col * image_size // 3, (obj.col + 1) * image_size // 3
                y0, y1 = obj.row * image_size // 3, (obj.row + 1) * image_size // 3
                assert x0 <= x and x + w <= x1 and y0 <= y and y + h <= y1, (obj, image_size)
                assert tuple(image[y + h // 2, x + w // 2]) == shapes.COLOURS[obj.colour]
                # The box is tight: the object touches all four of its sides.
                mask = np.all(image[y:y + h, x:x + w] == shapes.COLOURS[obj.colour], axis=-1)
                assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
                drawn[y:y + h, x:x + w] = True
            assert np.all(image[~drawn] == shapes.BACKGROUND)


def test_jpeg_images_match_scenes(shapes_world):
    truth = _load(shapes_world / "scenes.json")
    for record in truth["images"][:20]:
        image = cv2.imread(str(shapes_world / "images" / record["file_name"]))[..., ::-1]
        assert image.shape == (truth["image_size"],) * 2 + (3,)
        for obj in record["objects"]:
            x, y, w, h = obj["box"]
            centre = image[y + h // 2, x + w // 2].astype(int)
            assert np.abs(centre - shapes.COLOURS[obj["colour"]]).max() < 40, obj
            assert obj["phrase"] == f'{obj["size"]} {obj["colour"]} {obj["shape"]}'


# ---------------------------------------------------------------------------------------------
# Questions


def _answer(question: str, objects) -> str:
    """An independent oracle for every question template."""
    def named(colour, shape):
        return next(o for o in objects if (o.colour, o.shape) == (colour, shape))

    def rel(a, b, relation):
        return {"left of": a.col < b.col, "right of": a.col > b.col,
                "above": a.row < b.row, "below": a.row > b.row}[relation]

    if m := re.fullmatch(r"what color is the shape (.+)\?", question):
        return next(o.colour for o in objects if o.cell == POSITION_TO_CELL[m[1]])
    if m := re.fullmatch(r"what color is the (\w+)\?", question):
        (colour,) = [o.colour for o in objects if o.shape == m[1]]
        return colour
    if m := re.fullmatch(r"what shape is the (\w+) object\?", question):
        (shape,) = [o.shape for o in objects if o.colour == m[1]]
        return shape
    if m := re.fullmatch(r"what shape is (left of|right of|above|below) the (\w+) (\w+)\?", question):
        anchor = named(m[2], m[3])
        (shape,) = [o.shape for o in objects if o is not anchor and rel(o, anchor, m[1])]
        return shape
    if question == "how many shapes are there?":
        return str(len(objects))
    if m := re.fullmatch(r"how many (\w+) shapes are there\?", question):
        return str(sum(o.colour == m[1] for o in objects))
    if m := re.fullmatch(r"how many (\w+)s are there\?", question):
        return str(sum(o.shape == m[1] for o in objects))
    if m := re.fullmatch(r"is there an? (\w+) (\w+)\?", question):
        return "yes" if any((o.colour, o.shape) == (m[1], m[2]) for o in objects) else "no"
    if m := re.fullmatch(r"is the (\w+) (\w+) (left of|right of|above|below) the (\w+) (\w+)\?",
                         question):
        return "yes" if rel(named(m[1], m[2]), named(m[4], m[5]), m[3]) else "no"
    raise AssertionError(f"unknown question template: {question!r}")


def test_questions_are_answered_correctly_and_balanced():
    types, yes_no = collections.Counter(), collections.Counter()
    for scene, rng in _scenes(600, seed=5):
        questions = shapes.scene_questions(scene, rng)
        assert 3 <= len(questions) <= 5
        assert len({q.question for q in questions}) == len(questions)
        assert {q.answer_type for q in questions} == {"yes/no", "number", "other"}
        for q in questions:
            assert _answer(q.question, scene.objects) == q.answer, q
            assert q.question.startswith(q.question_type)
            types[q.question_type] += 1
            if q.answer_type == "yes/no":
                yes_no[q.answer] += 1
    assert set(types) >= {"what color is the", "what shape is the", "how many", "is there a",
                          "is the"}
    assert 0.42 < yes_no["yes"] / sum(yes_no.values()) < 0.58, yes_no


def test_human_answers_mostly_correct_and_normalise_to_the_answer():
    question = shapes.Question("how many shapes are there?", "2", "number", "how many")
    rng = np.random.default_rng(0)
    answers = [shapes.human_answers(question, rng) for _ in range(300)]
    assert all([a["answer_id"] for a in row] == list(range(1, 11)) for row in answers)
    flat = [a["answer"] for row in answers for a in row]
    assert 0.85 < flat.count("2") / len(flat) < 0.95
    assert set(flat) <= {"2", "two", "2 ", "1", "3"}
    assert all(shapes.most_common_answer(row) == "2" for row in answers)


def test_vqa_files(shapes_world):
    images = {s["id"]: s for s in _load(shapes_world / "scenes.json")["images"]}
    seen_types = set()
    for split in PLAIN_SPLITS:
        questions = _load(shapes_world / "vqa" / f"v2_OpenEnded_shapes_{split}_questions.json")
        annotations = _load(shapes_world / "vqa" / f"v2_shapes_{split}_annotations.json")
        assert questions["task_type"] == "Open-Ended" and questions["data_subtype"] == split
        by_id = {q["question_id"]: q for q in questions["questions"]}
        assert set(by_id) == {a["question_id"] for a in annotations["annotations"]}
        for a in annotations["annotations"]:
            assert images[a["image_id"]]["split"] == split
            assert a["question_id"] // 10 == a["image_id"] == by_id[a["question_id"]]["image_id"]
            assert len(a["answers"]) == 10
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert {x["answer_confidence"] for x in a["answers"]} <= {"yes", "maybe", "no"}
            counts = collections.Counter(x["answer"] for x in a["answers"])
            assert counts[a["multiple_choice_answer"]] == max(counts.values())
            seen_types.add(a["answer_type"])
    assert seen_types == {"yes/no", "number", "other"}


# ---------------------------------------------------------------------------------------------
# Videos


def _centroid_and_area(frame: np.ndarray, colour: str) -> tuple[float, float, int]:
    """Pixels nearest to `colour` among the palette and the background (robust to MJPEG)."""
    palette = np.array([shapes.BACKGROUND, *shapes.COLOURS.values()], np.float32)
    distance = np.linalg.norm(frame[:, :, None, :].astype(np.float32) - palette, axis=-1)
    mask = distance.argmin(-1) == 1 + list(shapes.COLOURS).index(colour)
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean()), int(mask.sum())


def _check_motion(frames: np.ndarray, activity: str, colour: str, turn: float = 1.0) -> None:
    size, last = frames.shape[1], len(frames) - 1
    turn_frame = int(round(turn * last))
    x0, y0, a0 = _centroid_and_area(frames[0], colour)
    xt, yt, _ = _centroid_and_area(frames[turn_frame], colour)
    x1, y1, a1 = _centroid_and_area(frames[-1], colour)
    travel = {"left": x0 - xt, "right": xt - x0, "up": y0 - yt, "down": yt - y0}
    direction = next((d for d in travel if d in activity), None)
    if activity.endswith("then back"):  # out 0.3 of the frame, then back where it started
        assert travel[direction] >= 0.2 * size and abs(x1 - x0) <= 2, (activity, x0, xt, x1)
    elif activity.endswith("then stopping"):  # 0.6 per clip until the turn, then still
        assert travel[direction] >= 0.5 * turn * size and abs(x1 - xt) <= 2, (activity, x0, xt, x1)
    elif direction:
        assert travel[direction] >= 0.5 * size, (activity, x0, y0, x1, y1)
    elif activity == "growing":
        assert a1 >= 4 * a0, (a0, a1)  # side x2 at least
    else:
        assert a0 >= 4 * a1, (a0, a1)


def test_every_activity_is_visible_after_writing(tmp_path):
    seen = set()
    for n in range(400):
        rng = np.random.default_rng([1, n])
        video = shapes.sample_video(rng)
        if video.activity in seen:
            continue
        seen.add(video.activity)
        path = str(tmp_path / f"{n}.avi")
        shapes.write_video(shapes.render_video(video, 32, 16), path)
        frames = shapes.read_video(path)
        assert frames.shape == (16, 32, 32, 3)
        _check_motion(frames, video.activity, video.start.colour, video.turn)
        captions = shapes.video_captions(video, rng)
        assert len(captions) == 5 and captions[0].startswith(("a ", "an "))
        assert all(video.start.colour in c for c in captions)
        if len(seen) == len(shapes.ACTIVITIES):
            break
    assert seen == set(shapes.ACTIVITIES)
    with pytest.raises(ValueError):
        shapes.render_video(video, 32, 8)


def test_msrvtt_files_and_videos(shapes_world):
    info = _load(shapes_world / "msrvtt" / "videodatainfo.json")
    truth = {v["video_id"]: v for v in _load(shapes_world / "scenes.json")["videos"]}
    categories = [line.split("\t") for line in
                  (shapes_world / "msrvtt" / "category.txt").read_text().splitlines()]
    assert categories == [[a, str(i)] for i, a in enumerate(shapes.ACTIVITIES)]
    sentences = collections.defaultdict(list)
    for s in info["sentences"]:
        sentences[s["video_id"]].append(s["caption"])
    assert [s["sen_id"] for s in info["sentences"]] == list(range(len(info["sentences"])))
    for video in info["videos"]:
        assert video["video_id"] == f'video{video["id"]}'
        assert video["split"] in ("train", "validate", "test")
        record = truth[video["video_id"]]
        assert shapes.ACTIVITIES[video["category"]] == record["activity"]
        assert video["end time"] == record["frames"] / shapes.FPS
        path = shapes_world / "msrvtt" / "videos" / f'{video["video_id"]}.avi'
        assert shapes.count_video_frames(str(path)) == record["frames"] == 16
        _check_motion(shapes.read_video(str(path)), record["activity"], record["object"]["colour"],
                      record["turn"])
        assert len(sentences[video["video_id"]]) == 5
        assert max(len(t) for t in text.count_tokens(sentences[video["video_id"]])) <= 16


def test_each_clips_tuple_in_the_files_is_the_generated_videos(shapes_world):
    """The semantic tuple (LRCN §6) of videodatainfo.json and scenes.json is the one of the video
    the generator drew (redrawn here from its stream), and the canonical caption says it."""
    info = {v["video_id"]: v for v in _load(shapes_world / "msrvtt" / "videodatainfo.json")["videos"]}
    truth = _load(shapes_world / "scenes.json")["videos"]
    assert {v["tuple"]["verb"] for v in truth} <= set(shapes.TUPLE_VERBS)
    for record in truth:
        video = shapes.sample_video(np.random.default_rng([3, shapes._VIDEO_STREAM, record["id"]]))
        assert record["tuple"] == info[record["video_id"]]["tuple"] == video.tuple
        assert set(video.tuple) == set(shapes.TUPLE_SLOTS)
        assert all(video.tuple[slot] in shapes.TUPLE_VALUES[slot] for slot in video.tuple)
        assert (video.tuple["colour"], video.tuple["shape"]) == (record["object"]["colour"],
                                                                 record["object"]["shape"])
        canonical = record["captions"][0].split()
        assert video.tuple["colour"] in canonical and video.tuple["shape"] in canonical
        assert video.tuple["verb"] in canonical
        assert video.tuple["place"] in canonical or video.tuple["place"] == "middle"


def test_activities_that_no_single_frame_tells_apart():
    """"then back" covers one segment in either order: the two mirrors have the same frames in
    another order; "then stopping" moves at the speed of "throughout" until it stops."""
    left = shapes.Video("moving left then back", shapes.VideoObject("circle", "red", 0.6, 0.3, 0.22),
                              shapes.VideoObject("circle", "red", 0.3, 0.3, 0.22), turn=0.5)
    right = shapes.Video("moving right then back", shapes.VideoObject("circle", "red", 0.3, 0.3, 0.22),
                               shapes.VideoObject("circle", "red", 0.6, 0.3, 0.22), turn=0.5)
    a, b = shapes.render_video(left, 32, 17), shapes.render_video(right, 32, 17)
    assert not np.array_equal(a, b)
    # The first half of one is the second half of the other: the same frames, in another order.
    assert np.array_equal(a[8:], b[:9]) and np.array_equal(a[:9], b[8:])
    stop = shapes.Video("moving left then stopping", shapes.VideoObject("square", "blue", 0.8, 0.5, 0.22),
                              shapes.VideoObject("square", "blue", 0.5, 0.5, 0.22), turn=0.5)
    assert stop.at(0.25) == dataclasses.replace(stop.start, x=0.65)
    assert stop.at(0.75) == stop.at(1.0) == stop.end
    assert (stop.tuple["verb"], stop.tuple["place"]) == ("stops", "left")


def test_videos_have_camera_noise_and_a_distractor_that_moves_unlike_the_subject():
    for n in range(40):
        video = shapes.sample_video(np.random.default_rng([5, n]))
        if video.distractor is None:
            continue
        frames = shapes.render_video(video, 32, 16)
        assert len(np.unique(frames[0].reshape(-1, 3), axis=0)) > 20  # noisy, not 3 flat colours
        first, last = video.distractor_at(0.0), video.distractor_at(1.0)
        drift = max(abs(last.x - first.x), abs(last.y - first.y))
        assert 0.2 <= drift < 0.3  # slower than the subject's 0.6 per clip
        motion = (video.end.x - video.start.x, video.end.y - video.start.y)
        assert (last.x - first.x, last.y - first.y) != motion


# ---------------------------------------------------------------------------------------------
# Formats, splits, determinism, CLI


def test_all_formats_agree(shapes_world):
    root = shapes_world
    truth = {s["id"]: s for s in _load(root / "scenes.json")["images"]}
    splits = {i: s["split"] for i, s in truth.items()}
    assert sorted(splits) == list(range(1, 61))
    assert collections.Counter(splits.values()) == {"train": 48, "val": 6, "test": 6}

    karpathy = _load(root / "dataset_shapes.json")
    assert karpathy["dataset"] == "shapes"
    assert {i["cocoid"]: i["split"] for i in karpathy["images"]} == splits
    captions = {i["cocoid"]: [s["raw"] for s in i["sentences"]] for i in karpathy["images"]}
    sentids = [s for i in karpathy["images"] for s in i["sentids"]]
    assert sentids == list(range(len(sentids)))
    for imgid, image in enumerate(karpathy["images"]):
        assert image["imgid"] == imgid and image["filename"] == f'{image["cocoid"]:012d}.jpg'
        assert (root / image["filepath"] / image["filename"]).exists()

    categories = None
    for split in PLAIN_SPLITS:
        caps = _load(root / "annotations" / f"captions_shapes_{split}.json")
        inst = _load(root / "annotations" / f"instances_shapes_{split}.json")
        ids = {i for i, s in splits.items() if s == split}
        assert {i["id"] for i in caps["images"]} == ids == {i["id"] for i in inst["images"]}
        by_image = collections.defaultdict(list)
        for a in caps["annotations"]:
            by_image[a["image_id"]].append(a["caption"])
        assert dict(by_image) == {i: captions[i] for i in ids}
        categories = {c["id"]: c["name"] for c in inst["categories"]}
        assert set(categories.values()) == set(shapes.SHAPES)
        assert all(c["supercategory"] == "shape" for c in inst["categories"])
        boxes = collections.defaultdict(list)
        for a in inst["annotations"]:
            x, y, w, h = a["bbox"]
            assert a["area"] == w * h and a["iscrowd"] == 0 and a["segmentation"] == []
            boxes[a["image_id"]].append((categories[a["category_id"]], a["bbox"]))
        assert dict(boxes) == {i: [(o["shape"], o["box"]) for o in truth[i]["objects"]]
                               for i in ids}

    flickr = root / "flickr8k"
    lines = (flickr / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    tokens = collections.defaultdict(list)
    for line in lines:
        key, caption = line.split("\t")
        name, k = key.split("#")
        assert int(k) == len(tokens[name])
        tokens[name].append(caption)
    assert tokens == {f"{i:012d}.jpg": c for i, c in captions.items()}
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        listed = (flickr / f"Flickr_8k.{name}Images.txt").read_text().split()
        assert {int(n[:12]) for n in listed} == {i for i, s in splits.items() if s == split}

    vg = root / "visual_genome"
    regions = _load(vg / "region_descriptions.json")
    assert [r["id"] for r in regions] == list(range(1, 61))
    for entry in regions:
        objects = truth[entry["id"]]["objects"]
        assert [(r["phrase"], [r["x"], r["y"], r["width"], r["height"]]) for r in entry["regions"]] \
            == [(o["phrase"], o["box"]) for o in objects]
        assert all(r["image_id"] == entry["id"] for r in entry["regions"])
    image_data = _load(vg / "image_data.json")
    assert all((root / d["url"]).exists() and d["coco_id"] == d["image_id"]
               and d["flickr_id"] is None for d in image_data)
    dense = _load(vg / "densecap_splits.json")
    assert {s: sorted(v) for s, v in dense.items()} == {
        s: sorted(i for i, x in splits.items() if x == s) for s in PLAIN_SPLITS}


def _tree_bytes(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    shapes.generate(str(tmp_path / "a"), seed=0, **SMALL)
    shapes.generate(str(tmp_path / "b"), seed=0, **SMALL)
    shapes.generate(str(tmp_path / "c"), seed=1, **SMALL)
    a, b, c = (_tree_bytes(tmp_path / d) for d in "abc")
    assert a == b
    assert any(name.endswith(".avi") for name in a) and "images/000000000001.jpg" in a
    assert a.keys() == c.keys()
    assert a["dataset_shapes.json"] != c["dataset_shapes.json"]
    assert a["images/000000000001.jpg"] != c["images/000000000001.jpg"]


def test_items_do_not_depend_on_how_many_are_generated():
    first = [shapes.sample_scene(np.random.default_rng([0, 0, i])) for i in range(3)]
    assert first == [shapes.sample_scene(np.random.default_rng([0, 0, i])) for i in range(3)]
    assert shapes.assign_splits(3, 0, 0).count("train") == 1
    assert shapes.assign_splits(2, 0, 0) == ["train", "train"]


@pytest.mark.slow  # a fresh process imports TensorFlow: ~10 s on this CPU
def test_cli(tmp_path):
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "vcaption.datasets.shapes", "--out", str(out), "--images", "6",
               "--videos", "2", "--image-size", "64", "--video-size", "32", "--frames", "16"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "images: 6" in result.stdout and "videos: 2" in result.stdout
    assert (out / "msrvtt" / "videos" / "video1.avi").exists()
    assert len(_load(out / "dataset_shapes.json")["images"]) == 6
    bad = subprocess.run(command[:-1] + ["8"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0 and "--frames" in bad.stderr


# ---------------------------------------------------------------------------------------------
# The novel-composition split


def _held_out_claims(text_: str, held_out: shapes.HeldOut) -> list:
    """The held-out compositions a sentence names: bound (colour, shape) pairs and relations."""
    from vcaption.metrics import grounding

    parsed = grounding.parse_caption(text_)
    pairs = [(m.colour, m.shape) for m in parsed.mentions if (m.colour, m.shape) in held_out.colour_shapes]
    relations = [(a.shape, r, b.shape) for a, r, b in parsed.relations
                 if (a.shape, r, b.shape) in held_out.relations
                 or (b.shape, shapes.CONVERSE_RELATION[r], a.shape) in held_out.relations]
    return pairs + relations


@pytest.fixture(scope="module")
def novel_world(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("novel"))
    paths = shapes.generate(out, num_images=160, num_videos=12, image_size=48, video_size=32,
                            num_frames=16, num_novel_images=30, num_novel_videos=4)
    return out, paths


def test_no_held_out_composition_outside_test_novel(novel_world):
    out, paths = novel_world
    scenes = _load(paths["scenes"])
    held_out = shapes.HeldOut.from_json(scenes["held_out"])
    assert held_out == shapes.DEFAULT_HELD_OUT
    by_id = {s["id"]: s for s in scenes["images"]}

    def scene_of(truth):
        return shapes.Scene(tuple(shapes.SceneObject(o["shape"], o["colour"], o["size"], o["row"], o["col"])
                                  for o in truth["objects"]))

    splits = collections.Counter()
    for image in _load(paths["karpathy"])["images"]:
        split = image["split"]
        splits[split] += 1
        scene = scene_of(by_id[image["cocoid"]])
        if split == "test_novel":
            assert held_out.in_scene(scene), image["cocoid"]
            continue
        assert not held_out.in_scene(scene), (image["cocoid"], scene)
        for sentence in image["sentences"]:
            assert not _held_out_claims(sentence["raw"], held_out), sentence["raw"]
    assert splits["test_novel"] == 30 and splits["train"] > 100
    # Every other text of the non-novel splits: VQA questions, Visual Genome phrases, video captions.
    for split in ("train", "val", "test"):
        for q in _load(paths["vqa_questions"][split])["questions"]:
            assert not _held_out_claims(q["question"], held_out), q["question"]
    densecap = _load(paths["visual_genome"]["splits"])
    novel_ids = set(densecap["test_novel"])
    for image in _load(paths["visual_genome"]["regions"]):
        for region in image["regions"]:
            if image["id"] not in novel_ids:
                assert not _held_out_claims(region["phrase"], held_out), region["phrase"]
    info = _load(paths["msrvtt"]["info"])
    novel_videos = {v["video_id"] for v in info["videos"] if v["split"] == "test_novel"}
    assert len(novel_videos) == 4
    for sentence in info["sentences"]:
        claims = _held_out_claims(sentence["caption"], held_out)
        if sentence["video_id"] in novel_videos:
            continue
        assert not claims, sentence["caption"]
    for video in scenes["videos"]:
        pair = (video["object"]["colour"], video["object"]["shape"])
        assert (pair in held_out.colour_shapes) == (video["split"] == "test_novel")


def test_every_format_carries_test_novel(novel_world):
    out, paths = novel_world
    from vcaption.datasets import coco, flickr8k, karpathy, msvd, visual_genome, vqa

    def novel_count(reader_output):
        return sum(getattr(e, "split", None) == "test_novel" for e in reader_output)

    assert novel_count(karpathy.read(paths["karpathy"])) == 30
    assert novel_count(coco.read(paths["coco_captions"]["test_novel"])) == 30
    assert novel_count(flickr8k.read(paths["flickr8k"]["tokens"], paths["images"])) == 30
    assert novel_count(visual_genome.read(paths["visual_genome"]["regions"])) == 30
    questions = _load(paths["vqa_questions"]["test_novel"])["questions"]
    assert novel_count(vqa.read(paths["vqa_questions"]["test_novel"])) == len(questions) > 30
    assert novel_count(msvd.read(paths["msrvtt"]["info"])) == 4


def test_plain_world_has_no_novel_split(tmp_path):
    paths = shapes.generate(str(tmp_path), **SMALL)
    assert "held_out" not in _load(paths["scenes"])
    assert set(paths["coco_captions"]) == {"train", "val", "test"}
    assert "test_novel" not in _load(paths["visual_genome"]["splits"])


# ---------------------------------------------------------------------------------------------
# The cluttered world


def test_cluttered_scenes_vary_and_their_captions_stay_true():
    from vcaption.metrics import grounding

    counts, scales, captions, scenes = collections.Counter(), [], {}, {}
    for index in range(400):
        rng = np.random.default_rng([3, 0, index])
        scene = shapes.sample_scene(rng, cluttered=True)
        counts[len(scene.objects)] += 1
        scales += [o.scale for o in scene.objects]
        objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "row": o.row, "col": o.col}
                   for o in scene.objects]
        for k, caption in enumerate(shapes.scene_captions(scene, rng)):
            assert shapes.num_tokens(caption) <= shapes.MAX_CAPTION_TOKENS, caption
            captions[f"{index}#{k}"], scenes[f"{index}#{k}"] = caption, {"objects": objects}
        image = shapes.render_scene(scene, 64)
        assert image.shape == (64, 64, 3)
        for obj in scene.objects:
            x, y, w, h = shapes.object_box(obj, 64)
            assert 0 <= x and x + w <= 64 and 0 <= y and y + h <= 64
    assert set(counts) == {1, 2, 3, 4, 5, 6}
    assert min(scales) < 0.9 and max(scales) > 1.2  # sizes vary within their class
    result = grounding.grounding_scores(captions, scenes)
    assert result["object_precision"] == 1.0 and result["binding_accuracy"] == 1.0
    assert result["count_accuracy"] == 1.0 and result["relation_accuracy"] == 1.0


def test_cluttered_background_is_noisy_and_deterministic():
    scene = shapes.sample_scene(np.random.default_rng(1), cluttered=True)
    image = shapes.render_scene(scene, 64)
    assert np.array_equal(image, shapes.render_scene(scene, 64))
    plain = shapes.render_scene(dataclasses.replace(scene, texture_seed=None), 64)
    assert len(np.unique(plain.reshape(-1, 3), axis=0)) <= len(scene.objects) + 1
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500  # noise everywhere


def test_large_cluttered_objects_can_overlap_a_neighbour():
    big = shapes.SceneObject("square", "red", "large", 1, 0, scale=1.35)
    right = shapes.SceneObject("circle", "blue", "large", 1, 1, scale=1.35)
    (x0, _, w0, _), (x1, _, _, _) = shapes.object_box(big, 96), shapes.object_box(right, 96)
    assert x0 + w0 > x1  # the boxes overlap: the circle, drawn later, hides part of the square
    image = shapes.render_scene(shapes.Scene((big, right)), 96)
    assert tuple(image[48, x1 + 1]) == shapes.COLOURS["blue"]


# ---------------------------------------------------------------------------------------------
# Visual Genome region annotators


def test_region_annotators_add_overlapping_true_phrases_and_change_nothing_else(tmp_path):
    from vcaption.datasets import visual_genome

    plain = shapes.generate(str(tmp_path / "plain"), **SMALL)
    annotated = shapes.generate(str(tmp_path / "annotated"), region_annotators=3, **SMALL)
    plain_bytes, annotated_bytes = _tree_bytes(tmp_path / "plain"), _tree_bytes(tmp_path / "annotated")
    changed = {name for name in plain_bytes if plain_bytes[name] != annotated_bytes[name]}
    assert changed == {"visual_genome/region_descriptions.json"}  # images, captions, splits: the same
    scenes = {e["id"]: e["objects"] for e in _load(plain["scenes"])["images"]}
    plain_regions = {e["id"]: e["regions"] for e in _load(plain["visual_genome"]["regions"])}
    ious = []
    for entry in _load(annotated["visual_genome"]["regions"]):
        objects, regions = scenes[entry["id"]], entry["regions"]
        assert len(regions) == 4 * len(objects)
        # Each object: its own tight box and phrase first (the plain world's region), then 3 workers'.
        assert [(r["x"], r["y"], r["width"], r["height"], r["phrase"]) for r in regions[::4]] == [
            (r["x"], r["y"], r["width"], r["height"], r["phrase"]) for r in plain_regions[entry["id"]]]
        for k, obj in enumerate(objects):
            for region in regions[4 * k + 1: 4 * k + 4]:
                box = (region["x"], region["y"], region["width"], region["height"])
                assert region["width"] >= 2 and region["height"] >= 2
                assert 0 <= region["x"] and region["x"] + region["width"] <= SMALL["image_size"]
                ious.append(visual_genome.box_iou([box], [obj["box"]])[0, 0])
                # The phrase is true of its object: its colour, and its shape or size if named.
                words = region["phrase"].split()
                assert obj["colour"] in words
                assert all(SHAPE_WORDS[w] == obj["shape"] for w in words if w in SHAPE_WORDS)
                assert all(SIZE_WORDS[w] == obj["size"] for w in words if w in SIZE_WORDS)
    assert len({r["region_id"] for e in _load(annotated["visual_genome"]["regions"]) for r in e["regions"]}) \
        == sum(len(e["regions"]) for e in _load(annotated["visual_genome"]["regions"]))
    # Most workers' boxes merge with their object's (IoU >= 0.7), and some do not, as in Visual Genome.
    assert 0.5 < np.mean(np.array(ious) >= 0.7) < 1.0 and min(ious) > 0.3
    with pytest.raises(ValueError, match="region_annotators"):
        shapes.generate(str(tmp_path / "bad"), region_annotators=shapes.MAX_REGION_ANNOTATORS + 1, **SMALL)
