"""Region captioning with strong supervision (Karpathy & Fei-Fei Table 5): the region records, the
end-to-end command and the region model's export, loaded by a TensorFlow-only process."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import TF_ONLY_PREAMBLE

from vcaption.datasets.base import CaptionedImage, DeadLetter, Region
from vcaption.retrieval import vg_region_captioning


def _image(id, split, *regions):
    return CaptionedImage(str(id), split, f"/images/{id}.jpg", (), tuple(Region(b, p) for b, p in regions))


def test_training_regions_stay_raw_and_evaluation_regions_merge():
    examples = [
        _image(1, "train", ((0, 0, 10, 10), "red ball"), ((0, 0, 10, 11), "a red circle")),
        DeadLetter("2", "image", "unknown_image", "image 2 not found"),
        _image(3, "test", ((0, 0, 10, 10), "red ball"), ((0, 0, 10, 11), "a red circle"),
               ((30, 30, 5, 5), "blue box")),
        _image(4, "train", ((1, 1, 4, 4), "green shape")),  # over the train limit
        _image(5, "val", ((2, 2, 8, 8), "small purple diamond")),
        _image(6, "test_novel", ((2, 2, 8, 8), "a red triangle")),  # a split not asked for
    ]
    items, paths, counts = vg_region_captioning.regions_by_split(
        examples, {"train": 1, "val": 5, "test": 5}, merge_iou=0.7)
    assert items["train"] == [{"image_id": "1", "box": (0, 0, 10, 10), "phrases": ["red ball"]},
                              {"image_id": "1", "box": (0, 0, 10, 11), "phrases": ["a red circle"]}]
    assert items["test"] == [{"image_id": "3", "box": (0.0, 0.0, 10.0, 10.5),
                              "phrases": ["red ball", "a red circle"]},
                             {"image_id": "3", "box": (30.0, 30.0, 5.0, 5.0), "phrases": ["blue box"]}]
    assert [i["phrases"] for i in items["val"]] == [["small purple diamond"]]
    assert set(items) == {"train", "val", "test"} and paths == {"1": "/images/1.jpg", "3": "/images/3.jpg",
                                                                 "5": "/images/5.jpg"}
    assert counts["train"] == {"images": 1, "boxes": 2, "regions": 2}
    assert counts["test"] == {"images": 1, "boxes": 3, "regions": 2}
    assert [d.id for d in counts["dead_letters"]] == ["2"]


def test_real_data_needs_its_regions_named():
    from vcaption import presets

    cfg = presets.get_preset("karpathy_vg_regions")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir="records/coco"))
    with pytest.raises(ValueError, match="task.regions"):
        vg_region_captioning.region_source(cfg, vg_region_captioning.DEFAULT_TASK_ARGS)
    given = {**vg_region_captioning.DEFAULT_TASK_ARGS, "regions": "vg/region_descriptions.json"}
    assert vg_region_captioning.region_source(cfg, given) == "vg/region_descriptions.json"


# Runs in a fresh interpreter with TensorFlow only (see helpers.TF_ONLY_PREAMBLE).
CAPTION_SCRIPT = TF_ONLY_PREAMBLE + textwrap.dedent("""
    export_dir, crops_path, out_path = sys.argv[1:]
    with open(crops_path) as f:
        crops = [base64.b64decode(c) for c in json.load(f)]
    out = tf.saved_model.load(export_dir).signatures["serving_default"](image_bytes=tf.constant(crops))
    with open(out_path, "w") as f:
        json.dump({"captions": [[c.decode() for c in row] for row in out["captions"].numpy()],
                   "modules": sorted(m for m in sys.modules
                                     if m.split(".")[0] in ("keras", "tf_keras", "vcaption"))},
                  f)
""")


def _caption_in_tensorflow_only_process(export_dir, crops: list[bytes], tmp_path) -> dict:
    (tmp_path / "crops.json").write_text(json.dumps([base64.b64encode(c).decode() for c in crops]))
    (tmp_path / "caption.py").write_text(CAPTION_SCRIPT)
    subprocess.run([sys.executable, str(tmp_path / "caption.py"), export_dir, str(tmp_path / "crops.json"),
                    str(tmp_path / "out.json")], check=True, cwd=str(tmp_path),
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads((tmp_path / "out.json").read_text())


def test_region_model_of_a_run_exports_and_captions_in_tensorflow_only(tmp_path):
    """A run directory as the task leaves it (the region model, its records' vocabulary in data/,
    config.json) exports alone, and a TensorFlow-only process captions region crops with it."""
    import keras
    import tensorflow as tf

    from vcaption import export as export_cli
    from vcaption import images, presets, text
    from vcaption.captioning.lrcn import LRCNCaptioner
    from vcaption.runtime.run_directory import RunDirectory

    words = "a red blue circle square small large the is shape".split()
    keras.utils.set_random_seed(0)
    model = LRCNCaptioner(vocab_size=len(text.RESERVED_TOKENS) + len(words), variant="2f", hidden_units=8,
                          embedding_dim=6, encoder="small_cnn", image_size=16, dropout=0.0)
    run = RunDirectory(str(tmp_path / "run"))
    model.save(run.file("model.keras"))
    text.Vocabulary.write(words, os.path.join(run.data.directory, "vocab.txt"))
    cfg = presets.get_preset("karpathy_vg_regions")
    run.write_config(dataclasses.replace(cfg, decode=dataclasses.replace(cfg.decode, beam_size=2, n_best=2)))
    path = export_cli.export_run(run.path, str(tmp_path / "saved_models"))
    assert path == str(tmp_path / "saved_models" / "karpathy_vg_regions" / "1")
    rng = np.random.default_rng(0)
    crops = [images.encode_jpeg(tf.constant(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))).numpy()
             for h, w in ((16, 16), (20, 9), (40, 33))]  # crops of any shape are warped to 16 x 16
    served = _caption_in_tensorflow_only_process(path, crops, tmp_path)
    assert served["modules"] == [] and len(served["captions"]) == 3
    assert all(len(row) == 2 and set(" ".join(row).split()) <= set(words) for row in served["captions"])


@pytest.mark.slow
def test_vg_region_captioning_end_to_end_and_export(tmp_path, capsys):
    from vcaption import export as export_cli
    from vcaption import presets, registry
    from vcaption.runtime.task import run_preset

    cfg = presets.get_preset("karpathy_vg_regions")
    cfg = dataclasses.replace(
        cfg, model_args={**cfg.model_args, "hidden_units": 32, "embedding_dim": 16, "dtype": "float32"},
        task_args={**cfg.task_args, "train_images": 20, "val_images": 4, "test_images": 6, "crop_size": 16,
                   "min_word_count": 2, "full_frame_steps": 4, "region_steps": 4},
        data=dataclasses.replace(cfg.data, shapes_root=str(tmp_path / "root"), shapes_images=60,
                                 shapes_seed=3, image_size=32, min_count=1),
        decode=dataclasses.replace(cfg.decode, beam_size=2, n_best=2),
        train=dataclasses.replace(cfg.train, batch_size=8, checkpoint_every=4),
        export=dataclasses.replace(cfg.export, saved_models_dir=str(tmp_path / "saved_models"),
                                   serving_config=""))
    result = run_preset(cfg, str(tmp_path / "run"), verbose=0)
    out = capsys.readouterr().out
    assert "Table 5" in out and "full-frame model" in out and "region-level model" in out
    saved = json.load(open(tmp_path / "run" / "metrics.json"))
    assert saved["full_frame"]["metrics"] == result["full_frame"]["metrics"]
    for side in ("full_frame", "region_level"):
        assert set(saved[side]["metrics"]) >= {"Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
        assert all(math.isfinite(v) for v in saved[side]["metrics"].values())
        assert saved[side]["training"]["steps"] == 4
    # The world the preset's settings name was generated with its annotators, and read from there.
    world_regions = tmp_path / "root" / "world-annotators4" / "visual_genome" / "region_descriptions.json"
    vg = json.load(open(world_regions))
    assert saved["regions_source"].endswith(os.path.join("world-annotators4", "visual_genome"))
    boxes = {str(e["id"]): e["regions"] for e in vg}
    # Train regions: raw, one phrase each; test regions: merged, every phrase of the image kept once.
    dataset = json.load(open(tmp_path / "run" / "region_data" / "dataset_regions.json"))["images"]
    train = [e for e in dataset if e["split"] == "train"]
    assert len(train) == saved["counts"]["train"]["boxes"] == sum(
        len(boxes[image_id]) for image_id in {e["image_id"] for e in train})
    assert all(len(e["sentences"]) == 1 for e in train)
    test = [e for e in dataset if e["split"] == "test"]
    assert len(test) == saved["counts"]["test"]["regions"] < saved["counts"]["test"]["boxes"]
    for image_id in {e["image_id"] for e in test}:
        phrases = sorted(s["raw"] for e in test if e["image_id"] == image_id for s in e["sentences"])
        assert phrases == sorted(r["phrase"] for r in boxes[image_id])
    captions = json.load(open(tmp_path / "run" / "region_captions_test.json"))
    assert len(captions) == len(test)
    assert saved["min_word_count"] == 2 and saved["merge_iou"] == 0.7

    # The region model's export (at the end of training, and again from the run directory alone)
    # captions crops in a process that imports TensorFlow only.
    crops = [open(tmp_path / "run" / "region_data" / e["filepath"] / e["filename"], "rb").read()
             for e in test[:3]]
    again = export_cli.export_run(str(tmp_path / "run"), str(tmp_path / "exports"), "regions")
    for path in (saved["export"], again):
        served = _caption_in_tensorflow_only_process(path, crops, tmp_path)
        assert served["modules"] == [] and len(served["captions"]) == 3
        assert all(len(row) == 2 for row in served["captions"])
    assert registry.load_model(str(tmp_path / "run" / "model.keras")).image_size == 16  # the crops' size
