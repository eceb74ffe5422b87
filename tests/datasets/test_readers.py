"""Readers for the public formats: good fixtures, every dead-letter path, and accounting."""

import collections
import json
import os
import pathlib
import shutil

import pytest

from vcaption.datasets import coco, flickr8k, karpathy, msvd, registry, visual_genome, vqa
from vcaption.datasets import base
from vcaption.datasets.base import DeadLetter

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "formats"
COCO_MINI = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco-mini"
BAD = "@BAD@"  # placeholder that write_json turns into bytes that are not UTF-8


# --- helpers -----------------------------------------------------------------------------------------

def run(reader, *args, **kwargs):
    """(examples, dead letters) from one reader call."""
    items = list(reader(*args, **kwargs))
    dead = [i for i in items if isinstance(i, DeadLetter)]
    return [i for i in items if not isinstance(i, DeadLetter)], dead


def reasons(dead):
    return collections.Counter((d.unit, d.reason) for d in dead)


def write_json(path, obj):
    """Writes JSON whose BAD placeholders become invalid UTF-8 bytes."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(obj).encode("utf-8").replace(BAD.encode(), b"\xff\xfe"))
    return str(path)


def write_text(path, text):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8").replace(BAD.encode(), b"\xff\xfe"))
    return str(path)


def image_level(dead, units=("image",)):
    return [d for d in dead if d.unit in units]


def assert_details_name(dead, name):
    for letter in dead:
        assert name in letter.detail, letter
        letter.to_json().encode("utf-8")  # dead letters must be writable even for bad input bytes


# --- karpathy ----------------------------------------------------------------------------------------

def test_karpathy_json_fixture():
    path = FIXTURES / "karpathy" / "dataset_tiny.json"
    examples, dead = run(karpathy.read, str(path))
    assert dead == []
    assert [e.id for e in examples] == ["42", "7", "1000268201_693b08cb0e.jpg", "3000.jpg"]
    assert [e.split for e in examples] == ["test", "train", "val", "train"]  # restval -> train
    assert examples[0].captions == ("A red circle.", "Red round shape")
    assert examples[1].captions == ("a blue square",)  # tokens joined when "raw" is absent
    assert examples[2].captions == ("A child in a pink dress .", "")  # empty is the Beam job's call
    assert examples[0].image_path == str(path.parent / "val2014" / "COCO_val2014_000000000042.jpg")
    assert examples[2].image_path == str(path.parent / "1000268201_693b08cb0e.jpg")
    assert examples[0].source == str(path)


def test_karpathy_jsonl_and_images_dir(tmp_path):
    examples, dead = run(karpathy.read, str(FIXTURES / "karpathy" / "dataset_tiny.jsonl"), str(tmp_path))
    assert dead == []
    assert [(e.id, e.split) for e in examples] == [
        ("1000268201_693b08cb0e.jpg", "val"), ("3000.jpg", "train")]
    assert examples[1].image_path == str(tmp_path / "3000.jpg")


def test_karpathy_dead_letters(tmp_path):
    def image(name, split="train", sentences=("a cat",), **extra):
        return {"filename": name, "split": split, "sentences": [{"raw": s} for s in sentences], **extra}

    path = write_json(tmp_path / "dataset_x.json", {"images": [
        image("a.jpg", sentences=("good one", f"bad {BAD} one")),
        image("b.jpg", sentences=(f"{BAD}",)),
        image("a.jpg", split="test"),
        image("c.jpg", split="holdout"),
        {"filename": "d.jpg", "split": "train"},
        image("e.jpg", sentences=()),
        image("f.jpg", cocoid=5), image("g.jpg", cocoid=5), image(f"h{BAD}.jpg"),
    ]})
    examples, dead = run(karpathy.read, path)
    assert [(e.id, e.captions) for e in examples] == [("a.jpg", ("good one",)), ("5", ("a cat",))]
    assert reasons(dead) == {
        ("caption", base.INVALID_UTF8): 2, ("image", base.NO_VALID_CAPTIONS): 2,
        ("image", base.DUPLICATE_ID): 2, ("image", base.UNKNOWN_SPLIT): 1, ("image", base.MALFORMED_ENTRY): 1,
        ("image", base.INVALID_UTF8): 1}
    assert_details_name(dead, path)
    assert len(examples) + len(image_level(dead)) == 9  # every listed image is accounted for


def test_karpathy_jsonl_bad_line(tmp_path):
    path = write_text(tmp_path / "x.jsonl",
                      '{"filename": "a.jpg", "split": "val", "sentences": [{"raw": "hi"}]}\n'
                      '{"filename": "b.jpg", \n\n[1, 2]\n')
    examples, dead = run(karpathy.read, path)
    assert [e.id for e in examples] == ["a.jpg"]
    assert [(d.id, d.unit, d.reason) for d in dead] == [
        (f"{path}:2", "line", base.MALFORMED_JSON), (f"{path}:4", "image", base.MALFORMED_ENTRY)]


# --- coco --------------------------------------------------------------------------------------------

def test_coco_fixture_with_instances():
    root = FIXTURES / "coco"
    examples, dead = run(coco.read, str(root / "annotations" / "captions_tiny_val.json"))
    assert dead == []
    assert [(e.id, e.split) for e in examples] == [("1", "val"), ("2", "val"), ("3", "val")]
    assert examples[0].captions == ("A red circle.", "Red circle on black.")
    # <images>/<subtype>/<file_name>, then <images>/<file_name>, else the first candidate.
    assert examples[0].image_path == str(root / "tiny_val" / "000000000001.jpg")
    assert examples[1].image_path == str(root / "000000000002.jpg")
    assert examples[2].image_path == str(root / "tiny_val" / "000000000003.jpg")
    # The instance annotation's id travels with the region (its dead letters carry it).
    assert examples[0].regions == (base.Region((1.0, 2.0, 3.0, 4.0), "circle", "circle", id="101"),)
    assert examples[1].regions[0].category == "triangle"
    assert examples[2].regions == ()


def test_coco_options(tmp_path):
    captions = str(FIXTURES / "coco" / "annotations" / "captions_tiny_val.json")
    examples, _ = run(coco.read, captions, str(tmp_path), split="test", with_instances=False)
    assert {e.split for e in examples} == {"test"}
    assert all(e.regions == () for e in examples)
    assert examples[0].image_path == str(tmp_path / "tiny_val" / "000000000001.jpg")
    instances = write_json(tmp_path / "other.json", {"annotations": [
        {"id": 1, "image_id": 3, "bbox": [0, 0, 1, 1], "category_id": 1}],
        "categories": [{"id": 1, "name": "dot"}]})
    examples, _ = run(coco.read, captions, instances_path=instances)
    assert [len(e.regions) for e in examples] == [0, 0, 1]


def test_coco_glob_and_list(tmp_path):
    for split, first_id in (("train", 1), ("val", 10)):
        write_json(tmp_path / "annotations" / f"captions_shapes_{split}.json", {
            "images": [{"id": first_id, "file_name": f"{first_id:012d}.jpg"}],
            "annotations": [{"id": first_id, "image_id": first_id, "caption": "a dot"}]})
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "000000000001.jpg").write_bytes(b"")
    examples, _ = run(coco.read, str(tmp_path / "annotations" / "captions_*.json"))
    assert [(e.id, e.split) for e in examples] == [("1", "train"), ("10", "val")]
    # The shapes layout, images in <annotations>/../images/, is found without images_dir.
    assert examples[0].image_path == str(tmp_path / "images" / "000000000001.jpg")
    listed = ",".join(str(tmp_path / "annotations" / f"captions_shapes_{s}.json") for s in ("val", "train"))
    assert [e.id for e in run(coco.read, listed)[0]] == ["10", "1"]
    assert [e.id for e in run(coco.read, str(tmp_path / "annotations"))[0]] == ["1", "10"]


def test_coco_dead_letters(tmp_path):
    annotations = tmp_path / "annotations"
    path = write_json(annotations / "captions_val2017.json", {
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"},
                   {"id": 1, "file_name": "x.jpg"},
                   {"id": 3, "file_name": "3.jpg"}, {"id": 4}, {"id": 5, "file_name": "5.jpg"},
                   {"id": 6, "file_name": f"{BAD}.jpg"}],
        "annotations": [{"id": 10, "image_id": 1, "caption": "ok"},
                        {"id": 11, "image_id": 1, "caption": f"{BAD}"},
                        {"id": 12, "image_id": 99, "caption": "orphan"},
                        {"id": 10, "image_id": 2, "caption": "dup"},
                        {"id": 13, "image_id": 3, "caption": f"x{BAD}"},
                        {"image_id": 2, "caption": "no id"}]})
    write_json(annotations / "instances_val2017.json", {
        "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 0, 5], "category_id": 1},
                        {"id": 2, "image_id": 1, "bbox": [0, 0, 2, 5], "category_id": 1},
                        {"id": 3, "image_id": 1, "bbox": [0, 0, 2], "category_id": 1},
                        {"id": 4, "image_id": 42, "bbox": [0, 0, 2, 2], "category_id": 1}],
        "categories": [{"id": 1, "name": "thing"}]})
    examples, dead = run(coco.read, path)
    assert [(e.id, e.captions, len(e.regions)) for e in examples] == [("1", ("ok",), 1)]
    assert reasons(dead) == {
        ("image", base.DUPLICATE_ID): 1, ("image", base.MALFORMED_ENTRY): 1,
        ("caption", base.MALFORMED_ENTRY): 1, ("caption", base.DUPLICATE_ID): 1,
        ("caption", base.UNKNOWN_IMAGE): 1, ("caption", base.INVALID_UTF8): 2,
        ("image", base.NO_VALID_CAPTIONS): 3,  # 2 (no caption left), 3 (invalid only), 5 (none listed)
        ("region", base.REGION_INVALID): 1, ("region", base.MALFORMED_ENTRY): 1,
        ("region", base.UNKNOWN_IMAGE): 1,
        ("image", base.INVALID_UTF8): 1}
    assert_details_name(dead, str(annotations))  # captions_ or instances_ file
    assert len(examples) + len(image_level(dead)) == 7
    unknown = [d for d in dead if d.reason == base.UNKNOWN_IMAGE and d.unit == "caption"][0]
    assert unknown.id == "12" and "99" in unknown.detail and path in unknown.detail


def test_coco_unknown_split(tmp_path):
    path = write_json(tmp_path / "annotations" / "captions_extra.json", {
        "images": [{"id": 1, "file_name": "1.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "caption": "a"}]})
    examples, dead = run(coco.read, path)
    assert examples == [] and [(d.id, d.reason) for d in dead] == [("1", base.UNKNOWN_SPLIT)]
    assert run(coco.read, path, split="train")[0][0].split == "train"


# --- flickr8k ----------------------------------------------------------------------------------------

def test_flickr8k_fixture():
    directory = FIXTURES / "flickr8k"
    examples, dead = run(flickr8k.read, str(directory / "Flickr8k.token.txt"))
    assert dead == []
    assert [(e.id, e.split, len(e.captions)) for e in examples] == [
        ("1000268201_693b08cb0e.jpg", "train", 2), ("1001773457_577c3a7d70.jpg", "val", 2),
        ("1002674143_1b742ab4b8.jpg", "test", 1)]
    assert examples[1].captions[1] == "Two dogs on pavement moving toward each other ."
    assert examples[0].image_path == str(directory / "Flicker8k_Dataset" / "1000268201_693b08cb0e.jpg")
    assert list(flickr8k.read(str(directory))) == examples  # the directory holding the token file


def test_flickr8k_dead_letters_and_accounting(tmp_path):
    directory = tmp_path / "flickr8k"
    token = write_text(directory / "Flickr8k.token.txt", "\n".join([
        "a.jpg#0\tA dog .", f"a.jpg#1\tbad {BAD} bytes", "a.jpg#0\trepeated caption id",
        "no tab here", f"b.jpg#0\t{BAD}", "c.jpg#0\tnot in any split", "d.jpg#x\tbad index", ""]))
    write_text(directory / "Flickr_8k.trainImages.txt", "a.jpg\nb.jpg\n")
    write_text(directory / "Flickr_8k.testImages.txt", "e.jpg\n")
    (tmp_path / "images").mkdir()  # the shapes layout: <dir>/../images
    examples, dead = run(flickr8k.read, token)
    assert [(e.id, e.captions) for e in examples] == [("a.jpg", ("A dog .",))]
    assert examples[0].image_path == str(tmp_path / "images" / "a.jpg")
    assert reasons(dead) == {
        ("caption", base.INVALID_UTF8): 2, ("caption", base.DUPLICATE_ID): 1,
        ("line", base.MALFORMED_LINE): 2,
        ("image", base.NO_VALID_CAPTIONS): 2, ("image", base.UNKNOWN_SPLIT): 1}
    assert {d.id for d in dead if d.unit == "line"} == {f"{token}:4", f"{token}:7"}
    # Images of the token file and of the split files: a, b, c, e.
    assert len(examples) + len(image_level(dead)) == 4


def test_flickr8k_split_files(tmp_path):
    token = write_text(tmp_path / "results_20130124.token", "1.jpg#0\tA man .\n2.jpg#0\tA woman .\n")
    with pytest.raises(ValueError, match="split_files"):
        list(flickr8k.read(token))
    write_text(tmp_path / "train.txt", "1.jpg\n")
    write_text(tmp_path / "test.txt", "2.jpg\n")
    as_dict = {"train": str(tmp_path / "train.txt"), "test": "test.txt"}
    for option in ("train=train.txt,test=test.txt", as_dict):
        examples, dead = run(flickr8k.read, token, split_files=option)
        assert [(e.id, e.split) for e in examples] == [("1.jpg", "train"), ("2.jpg", "test")] and dead == []


# --- vqa ---------------------------------------------------------------------------------------------

def test_vqa_directory_fixture():
    directory = FIXTURES / "vqa"
    examples, dead = run(vqa.read, str(directory))
    assert dead == []
    by_id = {e.question_id: e for e in examples}
    assert [e.question_id for e in examples] == ["9000", "42000", "42001"]  # files in name order
    test = by_id["9000"]
    assert (test.split, test.answers, test.multiple_choice_answer) == ("test", (), "")
    red = by_id["42000"]
    assert (red.split, red.image_id, red.question) == ("val", "42", "What color is the circle?")
    assert red.answers == ("red",) * 9 + ("orange",)
    assert (red.multiple_choice_answer, red.answer_type, red.question_type) == (
        "red", "other", "what color is the")
    assert red.image_path == str(FIXTURES / "val2014" / "COCO_val2014_000000000042.jpg")


def test_vqa_single_file_and_image_names(tmp_path):
    (tmp_path / "000000000042.jpg").write_bytes(b"")  # COCO 2017 naming
    path = FIXTURES / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
    examples, dead = run(vqa.read, str(path), str(tmp_path))
    assert dead == [] and len(examples) == 2
    assert examples[0].image_path == str(tmp_path / "000000000042.jpg")
    assert examples[1].answers == ("1",) * 10


def test_vqa_dead_letters(tmp_path):
    def question(qid, text="What is it?", image_id=1):
        return {"question_id": qid, "image_id": image_id, "question": text}

    def annotation(qid, image_id=1, answer="cat"):
        return {"question_id": qid, "image_id": image_id, "question_type": "what is", "answer_type": "other",
                "multiple_choice_answer": answer, "answers": [{"answer": answer, "answer_id": 1}]}

    questions = write_json(tmp_path / "vqa" / "v2_OpenEnded_x_train2014_questions.json", {
        "data_subtype": "train2014", "questions": [
            question(1), question(2, f"What {BAD}?"), question(1), question(3), {"question_id": 4},
            question(5), question(6, image_id=2)]})
    write_json(tmp_path / "vqa" / "v2_x_train2014_annotations.json", {
        "data_subtype": "train2014", "annotations": [
            annotation(1), annotation(2), annotation(5, answer=f"{BAD}"), annotation(6), annotation(77)]})
    write_json(tmp_path / "vqa" / "v2_OpenEnded_x_holdout_questions.json", {
        "data_subtype": "holdout", "questions": [question(100)]})
    examples, dead = run(vqa.read, str(tmp_path / "vqa"))
    assert [e.question_id for e in examples] == ["1"]
    assert reasons(dead) == {
        ("question", base.INVALID_UTF8): 2, ("question", base.DUPLICATE_ID): 1,
        ("question", base.MALFORMED_ENTRY): 4,  # 3 (no annotation), 4 (fields), 6 (image), 77 (no question)
        ("question", base.UNKNOWN_SPLIT): 1}
    assert_details_name([d for d in dead if d.id != "77"], "questions.json")
    from_questions = [d for d in dead if d.source.endswith("questions.json")]
    assert len(examples) + len(from_questions) == 8  # every listed question is accounted for


# --- visual genome -----------------------------------------------------------------------------------

def test_vg_fixture(tmp_path):
    directory = FIXTURES / "vg"
    (tmp_path / "1.jpg").write_bytes(b"")
    examples, dead = run(visual_genome.read, str(directory), str(tmp_path))
    assert dead == []
    assert [(e.id, e.split, e.captions) for e in examples] == [
        ("1", "train", ()), ("2", "val", ()), ("3", "test", ())]
    assert examples[0].regions[0] == base.Region(
        (421.0, 57.0, 82.0, 139.0), "the clock is green in colour", "", id="1382")
    assert len(examples[0].regions) == 2
    assert examples[0].image_path == str(tmp_path / "1.jpg")  # basename of the url
    assert examples[1].image_path == str(tmp_path / "2.jpg")
    assert examples[2].image_path == str(tmp_path / "3.jpg")  # no image_data entry: <image_id>.jpg


def test_vg_hash_split_and_shapes_layout(tmp_path):
    directory = tmp_path / "visual_genome"
    directory.mkdir()
    shutil.copy(FIXTURES / "vg" / "region_descriptions.json", directory)
    write_json(directory / "image_data.json", [{"image_id": 1, "url": "images/000000000001.jpg"}])
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "000000000001.jpg").write_bytes(b"")
    examples, dead = run(visual_genome.read, str(directory / "region_descriptions.json"))
    assert dead == []
    assert [e.split for e in examples] == [base.hash_split(e.id) for e in examples]
    assert examples[0].image_path == str(tmp_path / "images" / "000000000001.jpg")


def test_vg_dead_letters(tmp_path):
    def region(rid, phrase="a thing", w=2, h=3):
        return {"region_id": rid, "x": 0, "y": 0, "width": w, "height": h, "phrase": phrase}

    path = write_json(tmp_path / "region_descriptions.json", [
        {"id": 1, "regions": [region(1), region(2, "  "), region(3, w=0), region(4, f"{BAD}"),
                              {"region_id": 5}]},
        {"id": 2, "regions": [region(6, h=-1)]},
        {"id": 1, "regions": [region(7)]},
        {"id": 3, "regions": [region(8)]},
        {"regions": []},
    ])
    write_json(tmp_path / "densecap_splits.json", {"train": [1, 2], "val": [], "test": []})
    examples, dead = run(visual_genome.read, path)
    assert [(e.id, len(e.regions)) for e in examples] == [("1", 1)]
    assert reasons(dead) == {
        ("region", base.CAPTION_EMPTY): 1, ("region", base.REGION_INVALID): 2,
        ("region", base.INVALID_UTF8): 1,
        ("region", base.MALFORMED_ENTRY): 1, ("image", base.NO_VALID_CAPTIONS): 1,
        ("image", base.DUPLICATE_ID): 1, ("image", base.UNKNOWN_SPLIT): 1, ("image", base.MALFORMED_ENTRY): 1}
    assert len(examples) + len(image_level(dead)) == 5


# --- msvd / msr-vtt ----------------------------------------------------------------------------------

def test_msrvtt_fixture():
    directory = FIXTURES / "msrvtt"
    examples, dead = run(msvd.read, str(directory / "videodatainfo.json"))
    assert dead == []
    assert [(e.id, e.split, e.label) for e in examples] == [
        ("video0", "train", "vehicles/autos"), ("video1", "val", "food/drink"), ("video2", "test", "music")]
    assert examples[0].captions == ("a car is shown", "a red car drives")
    assert examples[0].video_path == str(directory / "videos" / "video0.avi")  # none exists: .avi
    assert examples[1].video_path == str(directory / "videos" / "video1.mp4")  # the existing file


def test_msrvtt_without_categories_and_dead_letters(tmp_path):
    path = write_json(tmp_path / "videodatainfo.json", {
        "videos": [{"video_id": "v0", "split": "train", "category": 3}, {"video_id": "v1", "split": "nope"},
                   {"video_id": "v0", "split": "test"}, {"video_id": "v2", "split": "test"}, {"split": "val"},
                   {"video_id": "v3", "split": "val"}],
        "sentences": [{"video_id": "v0", "caption": "a man"}, {"video_id": "v0", "caption": f"{BAD}"},
                      {"video_id": "v9", "caption": "lost", "sen_id": 9},
                      {"video_id": "v2", "caption": f"{BAD}"},
                      {"caption": "no video"}]})
    examples, dead = run(msvd.read, path)
    assert [(e.id, e.label, e.captions) for e in examples] == [("v0", "3", ("a man",))]
    assert reasons(dead) == {
        ("video", base.UNKNOWN_SPLIT): 1, ("video", base.DUPLICATE_ID): 1, ("video", base.MALFORMED_ENTRY): 1,
        ("caption", base.INVALID_UTF8): 2, ("caption", base.UNKNOWN_IMAGE): 1,
        ("caption", base.MALFORMED_ENTRY): 1,
        ("video", base.NO_VALID_CAPTIONS): 2}
    assert len(examples) + len(image_level(dead, ("video",))) == 6


def test_msvd_caption_map(tmp_path):
    path = FIXTURES / "msvd" / "captions.json"
    examples, dead = run(msvd.read, str(path), split="test")
    assert dead == [] and [(e.id, e.split, e.label) for e in examples] == [
        ("-4wsuPCjDBc_5_15", "test", ""), ("-7KMZQEsJW4_205_208", "test", "")]
    assert examples[1].video_path == str(path.parent / "videos" / "-7KMZQEsJW4_205_208.avi")
    examples, _ = run(msvd.read, str(path))
    assert [e.split for e in examples] == [base.hash_split(e.id) for e in examples]
    bad = write_json(tmp_path / "map.json", {"a": "not a list", "b": [f"{BAD}"], "c": ["fine"]})
    examples, dead = run(msvd.read, bad)
    assert [e.id for e in examples] == ["c"]
    assert reasons(dead) == {("video", base.MALFORMED_ENTRY): 1, ("caption", base.INVALID_UTF8): 1,
                             ("video", base.NO_VALID_CAPTIONS): 1}


def test_msvd_list_format_of_the_public_releases(tmp_path):
    """The list form `[{"id": "<clip>.avi", "caption": [...]}]`, one file per split."""
    directory = FIXTURES / "msvd"
    train, test = str(directory / "msvd_train.json"), str(directory / "msvd_test.json")
    examples, dead = run(msvd.read, f"{train},{test}")
    assert dead == []
    # The id is the clip without its extension, as in the caption map; the split is the file name's.
    assert [(e.id, e.split) for e in examples] == [
        ("-4wsuPCjDBc_5_15", "train"), ("-7KMZQEsJW4_205_208", "train"), ("0lh_UWF9ZP4_62_69", "test")]
    assert examples[0].captions == ("a squirrel is eating a peanut in it's shell", "a chipmunk is eating")
    assert examples[0].caption_ids == ("-4wsuPCjDBc_5_15#0", "-4wsuPCjDBc_5_15#1")
    assert examples[0].video_path == str(directory / "videos" / "-4wsuPCjDBc_5_15.avi")
    assert [e.id for e in run(msvd.read, str(directory / "msvd_*.json"))[0]] == [
        "0lh_UWF9ZP4_62_69", "-4wsuPCjDBc_5_15", "-7KMZQEsJW4_205_208"]  # a glob, in name order
    assert {e.split for e in run(msvd.read, train, split="val")[0]} == {"val"}  # the option wins
    clips = tmp_path / "YouTubeClips"  # the published folder name, found without images_dir
    clips.mkdir()
    (clips / "bare.mp4").write_bytes(b"")
    unnamed = write_json(tmp_path / "clips.json", [{"id": "bare", "caption": ["a man"]}])
    (example,), _ = run(msvd.read, unnamed)
    # A bare id is looked up with each video extension; no split word in the name: the hash.
    assert example.video_path == str(clips / "bare.mp4") and example.split == base.hash_split("bare")


def test_msvd_list_dead_letters(tmp_path):
    first = write_json(tmp_path / "train.json", [
        {"id": "a.avi", "caption": ["a dog runs", f"bad {BAD}"]},
        {"id": "b.avi", "caption": "not a list"},
        ["not", "an", "object"],
        {"caption": ["no id"]},
        {"id": "a.avi", "caption": ["the same clip again"]},
        {"id": "c.avi", "caption": [f"{BAD}", 7]},
    ])
    second = write_json(tmp_path / "test.json", [{"id": "a.mp4", "caption": ["a in another file"]},
                                                 {"id": "d.avi", "caption": ["fine"]}])
    examples, dead = run(msvd.read, f"{first},{second}")
    assert [(e.id, e.split, e.captions) for e in examples] == [
        ("a", "train", ("a dog runs",)), ("d", "test", ("fine",))]
    assert reasons(dead) == {
        ("caption", base.INVALID_UTF8): 2, ("caption", base.MALFORMED_ENTRY): 1,
        ("video", base.MALFORMED_ENTRY): 3, ("video", base.DUPLICATE_ID): 2,  # a.avi twice, a.mp4
        ("video", base.NO_VALID_CAPTIONS): 1}
    assert {d.id for d in dead if d.unit == "caption"} == {"a#1", "c#0", "c#1"}
    assert len(examples) + len(image_level(dead, ("video",))) == 8  # every entry is accounted for


# --- media paths: confined to the media directory ------------------------------------------------------

UNSAFE = {"../up.jpg": base.PATH_OUTSIDE_IMAGES, "/etc/x.jpg": base.PATH_OUTSIDE_IMAGES,
          "sub/../../up.jpg": base.PATH_OUTSIDE_IMAGES, "ok.jpg\0.png": base.PATH_INVALID}
SAFE = ["ok.jpg", "sub/../in.jpg"]


def _karpathy_names(tmp, names):
    return write_json(tmp / "d.json", {"images": [
        {"filename": n, "split": "train", "sentences": [{"raw": "a cat"}]} for n in names]}), {}


def _coco_names(tmp, names):
    return write_json(tmp / "annotations" / "captions_val2017.json", {
        "images": [{"id": i, "file_name": n} for i, n in enumerate(names)],
        "annotations": [{"id": i, "image_id": i, "caption": "a cat"} for i in range(len(names))]}), {}


def _flickr8k_names(tmp, names):
    write_text(tmp / "Flickr_8k.trainImages.txt", "".join(n + "\n" for n in SAFE))
    return write_text(tmp / "Flickr8k.token.txt", "".join(f"{n}#0\ta cat\n" for n in names)), {}


def _vqa_names(tmp, names):  # a non-numeric image id is the file name's stem
    ids = [n[:-len(".jpg")] if n.endswith(".jpg") else n for n in names]
    questions = write_json(tmp / "v2_OpenEnded_x_train2014_questions.json", {
        "data_subtype": "train2014",
        "questions": [{"question_id": k, "image_id": i, "question": "what?"} for k, i in enumerate(ids)]})
    return questions, {}


def _vg_names(tmp, names):  # image_data.json's url names the file
    write_json(tmp / "image_data.json", [{"image_id": k, "url": f"https://x/VG_100K/{n}"}
                                         for k, n in enumerate(names)])
    return write_json(tmp / "region_descriptions.json", [
        {"id": k, "regions": [{"region_id": k, "x": 0, "y": 0, "width": 2, "height": 2, "phrase": "a cat"}]}
        for k in range(len(names))]), {}


def _msvd_list_names(tmp, names):
    return write_json(tmp / "clips.json", [{"id": n, "caption": ["a cat"]} for n in names]), {}


def _msvd_map_names(tmp, names):
    return write_json(tmp / "map.json", {n: ["a cat"] for n in names}), {}


@pytest.mark.parametrize("reader,write", [
    (karpathy.read, _karpathy_names), (coco.read, _coco_names), (flickr8k.read, _flickr8k_names),
    (vqa.read, _vqa_names), (visual_genome.read, _vg_names), (msvd.read, _msvd_list_names),
    (msvd.read, _msvd_map_names)], ids=["karpathy", "coco", "flickr8k", "vqa", "vg", "msvd_list", "msvd_map"])
def test_media_names_outside_the_media_directory_or_with_a_nul_byte_are_refused(tmp_path, reader, write):
    media = tmp_path / "media"
    media.mkdir()
    names = SAFE + list(UNSAFE)
    if reader is visual_genome.read:  # a url's last part is a name: no "/" in it, ".." alone climbs
        names = ["ok.jpg", "in.jpg", "..", "ok.jpg\0.png"]
    path, options = write(tmp_path / "annotations_dir", names)
    examples, dead = run(reader, path, str(media), **options)
    assert len(examples) == 2
    for example in examples:
        located = getattr(example, "image_path", None) or example.video_path
        assert "\0" not in located
        assert os.path.commonpath([os.path.normpath(located), str(media)]) == str(media), located
    # (COCO also dead-letters the refused images' caption annotations, as UNKNOWN_IMAGE.)
    refused = [d for d in dead if d.unit != "caption"]
    assert collections.Counter(d.reason for d in refused) == {
        base.PATH_OUTSIDE_IMAGES: len(names) - 3, base.PATH_INVALID: 1}
    for letter in refused:
        assert "outside the media directory" in letter.detail or "NUL byte" in letter.detail
        letter.to_json()


def test_image_dir_refuses_what_a_reader_failed_to_check(tmp_path):
    from vcaption.datasets._common import ImageDir

    with pytest.raises(ValueError, match="outside"):
        ImageDir(str(tmp_path), []).path("../x.jpg")
    assert base.path_problem("a/b.jpg") is None and base.path_problem("a\0")[0] == base.PATH_INVALID


def test_caption_and_region_ids_travel_from_the_reader(tmp_path):
    """The reader numbers captions once (published ids, else `<id>#<k>` by published position); the
    examples carry those ids so that a later stage dead-letters a caption under the same id."""
    path = write_json(tmp_path / "d.json", {"images": [{"filename": "a.jpg", "split": "train", "cocoid": 7,
                                                        "sentences": [{"raw": f"{BAD}"}, {"raw": "..."},
                                                                      {"raw": "a cat"}]}]})
    (example,), (letter,) = run(karpathy.read, path)
    assert letter.id == "7#0" and example.caption_ids == ("7#1", "7#2")
    coco_examples, _ = run(coco.read, str(FIXTURES / "coco" / "annotations" / "captions_tiny_val.json"))
    assert all(len(e.caption_ids) == len(e.captions) for e in coco_examples)
    assert base.caption_ids(base.CaptionedImage("x", "train", "x.jpg", ("a", "b"))) == ("x#0", "x#1")


# --- shared rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reader,name", [
    (karpathy.read, "dataset_x.json"), (coco.read, "captions_val2017.json"),
    (vqa.read, "v2_x_val2014_questions.json"), (visual_genome.read, "region_descriptions.json"),
    (msvd.read, "videodatainfo.json")])
def test_invalid_json_file_raises_naming_the_file(tmp_path, reader, name):
    path = write_text(tmp_path / name, '{"images": [1, 2,')
    with pytest.raises(ValueError, match=name):
        list(reader(path))


def test_registry():
    path = str(FIXTURES / "karpathy" / "dataset_tiny.json")
    assert list(registry.read("karpathy", path)) == list(karpathy.read(path))
    assert set(registry.READERS) == {"karpathy", "coco", "flickr8k", "vqa", "vg", "msvd"}
    with pytest.raises(ValueError, match="coco, flickr8k, karpathy, msvd, vg, vqa"):
        registry.read("imagenet", path)


@pytest.mark.shared_data
def test_coco_mini_real_data():
    annotations = COCO_MINI / "annotations"
    if not (annotations / "captions_val2017.json").exists():
        pytest.skip(f"real data not present at {COCO_MINI}")
    examples, dead = run(coco.read, str(annotations / "captions_val2017.json"))
    assert dead == []
    assert len(examples) == 79 and {len(e.captions) for e in examples} == {5}
    assert {e.split for e in examples} == {"val"}
    assert all(os.path.exists(e.image_path) for e in examples)
    assert all(os.path.dirname(e.image_path) == str(COCO_MINI / "val2017") for e in examples)
    with_regions = [e for e in examples if e.regions]
    regions = [r for e in with_regions for r in e.regions]
    assert regions and all(r.category and r.phrase == r.category for r in regions)
    assert "person" in {r.category for r in regions}
    assert all(e.regions == () for e in run(coco.read, str(annotations / "captions_val2017.json"),
                                            with_instances=False)[0])
