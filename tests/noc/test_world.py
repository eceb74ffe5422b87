"""The NOC shapes world: held-out classes in no paired train/val caption, every class in the
unpaired labelled images and text; the NOC data readers."""

from __future__ import annotations

import json
import re

import pytest

from vcaption import text
from vcaption.datasets import shapes
from vcaption.noc import data as noc_data


@pytest.fixture(scope="module")
def noc_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("noc_world")
    paths = shapes.generate(str(out), num_images=60, num_videos=0, seed=1, image_size=48, noc=True)
    return out, paths


def test_held_out_classes_only_in_test_images_and_unpaired_data(noc_world):
    out, paths = noc_world
    assert len(shapes.NOC_SHAPES) >= 8 and len(shapes.NOC_HELD_OUT) >= 2
    with open(paths["karpathy"]) as f:
        images = json.load(f)["images"]
    words = lambda s: set(re.findall(r"[a-z]+", s))  # noqa: E731
    for image in images:
        said = set().union(*(words(s["raw"]) for s in image["sentences"]))
        if image["split"] in ("train", "val"):
            assert not said & set(shapes.NOC_HELD_OUT), image["sentences"]
    with open(paths["scenes"]) as f:
        scenes = json.load(f)
    assert scenes["noc"]["held_out"] == list(shapes.NOC_HELD_OUT)
    in_scenes = {s["split"]: set() for s in scenes["images"]}
    for s in scenes["images"]:
        in_scenes[s["split"]] |= {o["shape"] for o in s["objects"]}
    assert not (in_scenes["train"] | in_scenes["val"]) & set(shapes.NOC_HELD_OUT)
    assert set(shapes.NOC_SHAPES) - set(shapes.NOC_HELD_OUT) <= in_scenes["train"]
    # Unpaired data covers every class, held-out ones included.
    entries = noc_data.read_image_labels(paths["noc"]["image_labels"])
    assert len(entries) == 60 and {label for _, labels in entries for label in labels} == set(shapes.NOC_SHAPES)
    corpus = noc_data.read_corpus(paths["noc"]["text_corpus"])
    assert len(corpus) == 300
    assert set(shapes.NOC_SHAPES) <= set().union(*(words(s) for s in corpus))
    with open(paths["coco_instances"]["test"]) as f:
        assert [c["name"] for c in json.load(f)["categories"]] == list(shapes.NOC_SHAPES)


def test_extended_vocabulary_keeps_caption_ids_and_adds_corpus_words():
    caption_words = [*text.RESERVED_TOKENS, "a", "red", "circle"]
    corpus = [["a", "red", "star"], ["a", "star"], ["a", "hexagon"], ["a", "hexagon"], ["a", "rare"]]
    words = noc_data.extended_vocabulary(caption_words, corpus, min_count=2)
    assert words == caption_words + ["hexagon", "star"]


def test_image_label_list_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not read here")
    listing = tmp_path / "labels.txt"
    listing.write_text("x.jpg\tstar,circle\nno_tab_here\n")
    with pytest.raises(ValueError, match="labels.txt:2: expected `image<TAB>label,label`"):
        noc_data.read_image_labels(str(listing))
    listing.write_text("x.jpg\tstar\nmissing.jpg\tcircle\n")
    with pytest.raises(ValueError, match="1 labelled images are missing.*labels.txt:2"):
        noc_data.read_image_labels(str(listing))
    listing.write_text("x.jpg\tstar, circle\n")
    assert noc_data.read_image_labels(str(listing)) == [(str(tmp_path / "x.jpg"), ["star", "circle"])]
    with pytest.raises(ValueError, match="labels \\['circle'\\] are not among the classes"):
        noc_data.labelled_images(noc_data.read_image_labels(str(listing)), ["star"], 32, 1, 0)
