"""Region-level captioning (Karpathy & Fei-Fei Table 4): region records and the end-to-end command."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from vcaption import images, text
from vcaption.retrieval import region_annotations, region_crops


def _picture() -> np.ndarray:
    """A 64x48 (H x W) image: grey background, a red 10x20 (w x h) box at x=30, y=8."""
    image = np.full((64, 48, 3), 128, np.uint8)
    image[8:28, 30:40] = (255, 0, 0)
    return image


def test_crop_region_is_the_box_warped():
    crop = region_crops.crop_region(_picture(), (30, 8, 10, 20), 16)
    assert crop.shape == (16, 16, 3)
    assert np.all(crop == (255, 0, 0))  # only the box's pixels, nothing of the background
    # A box half outside is clipped to the image; a box fully outside has no crop.
    clipped = region_crops.crop_region(_picture(), (40, 50, 20, 30), 8)
    assert clipped.shape == (8, 8, 3) and np.all(clipped == 128)
    assert region_crops.crop_region(_picture(), (60, 70, 5, 5), 8) is None
    # Context: 5 source pixels on every side of the 10x20 box -> its 20x30 window.
    padded = region_crops.crop_region(_picture(), (30, 8, 10, 20), 30, context=5)
    window = images.resize_image(tf.constant(_picture()[3:33, 25:45]), 30).numpy()
    np.testing.assert_array_equal(padded, window)


def test_group_regions_merges_phrases_of_one_box():
    entries = [{"id": 7, "regions": [
        {"x": 1, "y": 2, "width": 3, "height": 4, "phrase": "a red square"},
        {"x": 0, "y": 0, "width": 64, "height": 64, "phrase": "there is"},
        {"x": 1, "y": 2, "width": 3, "height": 4, "phrase": "a red box"}]}]
    grouped = region_crops.group_regions(entries)
    assert grouped == [{"image_id": "7", "box": (1, 2, 3, 4), "phrases": ["a red square", "a red box"]},
                       {"image_id": "7", "box": (0, 0, 64, 64), "phrases": ["there is"]}]


def test_region_dataset_crops_match_boxes_and_carry_phrases(tmp_path):
    picture = tmp_path / "p.png"
    tf.io.write_file(str(picture), tf.io.encode_png(_picture()))
    regions = {"train": [{"image_id": "5", "box": (30, 8, 10, 20), "phrases": ["a red box", "red box"]}],
               "test": [{"image_id": "5", "box": (0, 0, 48, 64), "phrases": ["the picture"]},
                        {"image_id": "9", "box": (0, 0, 4, 4), "phrases": ["no such image"]},
                        {"image_id": "5", "box": (100, 100, 4, 4), "phrases": ["outside"]}]}
    path, written = region_crops.write_region_dataset(regions, {"5": str(picture)}, 16,
                                                           str(tmp_path / "out"))
    assert written == {"regions": {"train": 1, "test": 1}, "dead_letter": 2}
    dataset = json.load(open(path))["images"]
    assert [(e["split"], [s["raw"] for s in e["sentences"]]) for e in dataset] == [
        ("train", ["a red box", "red box"]), ("test", ["the picture"])]
    crop = images.decode_image(tf.io.read_file(str(tmp_path / "out" / dataset[0]["filepath"] /
                                                   dataset[0]["filename"]))).numpy()
    assert np.all(crop == (255, 0, 0))
    whole = images.decode_image(
        tf.io.read_file(str(tmp_path / "out" / "crops" / dataset[1]["filename"]))).numpy()
    np.testing.assert_array_equal(whole, images.resize_image(tf.constant(_picture()), 16).numpy())
    dead = [json.loads(line) for line in open(tmp_path / "out" / "dead_letter.jsonl")]
    assert sorted(d["reason"] for d in dead) == ["empty_box", "unknown_image"]


def test_sentence_phrases_name_one_object_with_its_article():
    objects = [{"shape": "circle", "colour": "red", "size": "large", "box": [1, 2, 30, 30]},
               {"shape": "square", "colour": "blue", "size": "small", "box": [50, 60, 10, 10]},
               {"shape": "square", "colour": "blue", "size": "large", "box": [5, 70, 30, 30]}]
    tokens = "there is a big red ball and a tiny blue box and a blue square".split()
    # "a blue square" fits two objects: no box is the right one, so it gives no reference.
    assert region_annotations.sentence_phrases(tokens, objects) == [
        ("a big red ball", (1, 2, 30, 30)), ("a tiny blue box", (50, 60, 10, 10))]


@pytest.mark.slow
def test_region_captioning_end_to_end(shapes_world, tmp_path, capsys):
    from beam_jobs import preprocess
    from vcaption import presets
    from vcaption.runtime.task import run_preset

    records = tmp_path / "records"
    preprocess.run(["--format", "coco", "--input", str(shapes_world / "annotations"),
                    "--output", str(records), "--image-size", "32", "--min-count", "1"])
    cfg = presets.get_preset("karpathy_region_captioning")
    cfg = dataclasses.replace(
        cfg, model_args={**cfg.model_args, "hidden_units": 32, "embedding_dim": 16},
        task_args={**cfg.task_args, "world": str(shapes_world), "ranker_epochs": 1, "ranker_batch_size": 8,
                   "train_images": 20, "val_images": 5, "test_images": 4, "crop_size": 16,
                   "full_frame_steps": 4, "region_steps": 4},
        data=dataclasses.replace(cfg.data, data_dir=str(records), image_size=32, min_count=1),
        decode=dataclasses.replace(cfg.decode, beam_size=1),
        train=dataclasses.replace(cfg.train, batch_size=8, checkpoint_every=4))
    result = run_preset(cfg, str(tmp_path / "run"), verbose=0)
    out = capsys.readouterr().out
    assert "full-frame model" in out and "region-level model" in out
    saved = json.load(open(tmp_path / "run" / "metrics.json"))
    assert saved["full_frame"]["metrics"] == result["full_frame"]["metrics"]
    assert set(saved) == {"preset", "task", "split", "beam_size", "data_dir", "region_records", "beta",
                          "regions", "dead_letter", "test_images", "full_frame", "region_level",
                          "visual_genome_phrase_only", "alignment_seconds", "seconds"}
    # The ranker was trained inside the run (no task.ranker), by its own preset's task.
    assert "alignment" in json.load(open(tmp_path / "run" / "ranker" / "metrics.json"))
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["data_dir"] == str(records) and config["run_dir"] == str(tmp_path / "run")
    assert config["task_args"]["full_frame_steps"] == 4 and config["task_args"]["max_regions"] == 5
    for side in ("full_frame", "region_level"):
        assert set(saved[side]["metrics"]) >= {"Bleu_1", "Bleu_4", "METEOR", "CIDEr"}
        assert all(math.isfinite(v) for v in saved[side]["metrics"].values())
        assert saved[side]["training"]["steps"] == 4  # the explicit, equal step budgets
        assert set(saved[side]["training"]) == {"steps", "seconds", "best_val_CIDEr", "train_captions"}
    # Test regions are the world's annotated object boxes: references = the Visual Genome phrase
    # first, then that object's phrases in its image's sentences.
    vg_path = shapes_world / "visual_genome" / "region_descriptions.json"
    annotated = {str(e["id"]): e for e in json.load(open(vg_path))}
    captions = json.load(open(tmp_path / "run" / "region_captions_test.json"))
    boxes = sum(len({(r["x"], r["y"], r["width"], r["height"]) for r in annotated[i]["regions"]})
                for i in {k.split("_")[1] for k in captions})
    assert len(captions) == saved["regions"]["test"] == boxes
    phrases = {r["phrase"] for e in annotated.values() for r in e["regions"]}
    assert all(v["references"][0] in phrases for v in captions.values())
    sentences = {}
    for split in ("train", "val", "test"):
        coco = json.load(open(shapes_world / "annotations" / f"captions_shapes_{split}.json"))
        for a in coco["annotations"]:
            sentences.setdefault(str(a["image_id"]), []).append(f" {text.normalized_caption(a['caption'])} ")
    for key, v in captions.items():
        assert all(any(f" {r} " in c for c in sentences[key.split("_")[1]]) for r in v["references"][1:])
    assert any(r.split()[0] in region_annotations.ARTICLES
               for v in captions.values() for r in v["references"][1:])
    assert sum(len(v["references"]) for v in captions.values()) > 2 * len(captions)
    assert set(saved["visual_genome_phrase_only"]) == {"full-frame model", "region-level model"}
    # Training snippets come from the alignment of whole sentences: each is a run of a sentence's words.
    aligned = json.load(open(tmp_path / "run" / "region_data" / "alignments_train.json"))
    assert len(aligned) == 20 and all(r["phrase"] for e in aligned for r in e["regions"])
