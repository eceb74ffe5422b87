"""beam_jobs.extract_features: feature records equal to the encoder's, every other field kept,
bad inputs dead-lettered, and a captioner trains on the output in precomputed-features mode."""

from __future__ import annotations

import glob
import json

import apache_beam as beam
import cv2
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from beam_jobs import extract_features, inference
from vcaption import data, images, records
from vcaption.datasets import base

FEATURE_DIM = 12
SPEC = {"encoder": "small_cnn", "image_size": 32, "weights": "none", "feature_dim": FEATURE_DIM, "seed": 0}
ENCODER_ARGS = ["--encoder", "small_cnn", "--weights", "none", "--image-size", "32",
                "--feature-dim", str(FEATURE_DIM), "--batch-size", "8"]


def _records(pattern: str) -> list[dict]:
    return [records.parse_caption_example(s) for s in tf.data.TFRecordDataset(sorted(glob.glob(pattern)))]


def _direct_features(encoder, encoded: bytes) -> np.ndarray:
    """The reference path, one image at a time: preprocess_image, then the encoder on 0..255 floats."""
    pixels = images.preprocess_image(tf.constant(encoded), 32)[tf.newaxis]  # [1, 32, 32, 3]
    return encoder(tf.cast(pixels, tf.float32), training=False).numpy()[0]


@pytest.fixture(scope="module")
def features_dir(shapes_records, tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    stats = extract_features.run(["--input", str(shapes_records), "--output", str(out), *ENCODER_ARGS])
    return out, stats


def test_every_record_gains_its_encoder_features_and_keeps_everything_else(features_dir, shapes_records):
    out, stats = features_dir
    source = json.load(open(shapes_records / "stats.json"))
    assert stats["examples"] == source["examples"] and stats["captions"] == source["captions"]
    assert stats["feature_dim"] == FEATURE_DIM and stats["features"]["dead_lettered"]["total"] == 0
    assert stats["features"]["read"] == stats["features"]["written"] == sum(source["examples"].values())
    for name in ("vocab.txt", "vocab_counts.txt"):
        assert (out / name).read_text() == (shapes_records / name).read_text()

    encoder, _ = extract_features.load_encoder(SPEC)
    for split in base.SPLITS:
        originals = {r["image_id"].numpy(): r for r in _records(str(shapes_records / f"{split}-*.tfrecord*"))}
        written = [records.parse_caption_example(s, FEATURE_DIM)
                   for s in tf.data.TFRecordDataset(sorted(glob.glob(str(out / f"{split}-*.tfrecord*"))))]
        assert sorted(originals) == sorted(r["image_id"].numpy() for r in written)
        for record in written[:4]:
            original = originals[record["image_id"].numpy()]
            assert record["image_jpeg"].numpy() == original["image_jpeg"].numpy()
            assert record["captions"].numpy().tolist() == original["captions"].numpy().tolist()
            assert record["caption_ids"].to_list() == original["caption_ids"].to_list()
            np.testing.assert_allclose(record["features"].numpy(),
                                       _direct_features(encoder, original["image_jpeg"].numpy()),
                                       rtol=1e-4, atol=1e-5)
    # What training reads: feature vectors in place of images.
    inputs, _ = next(iter(data.make_dataset(str(out), "train", batch_size=4, feature_dim=FEATURE_DIM)))
    assert inputs["visual"].shape == (4, FEATURE_DIM) and inputs["visual"].dtype == tf.float32


def test_image_files_with_bad_ones_become_feature_records_and_dead_letters(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    (folder / "good.jpg").write_bytes(cv2.imencode(".jpg", pixels)[1].tobytes())
    (folder / "good.png").write_bytes(cv2.imencode(".png", pixels[:30])[1].tobytes())
    (folder / "corrupt.jpg").write_bytes((folder / "good.jpg").read_bytes()[:300] + b"\0" * 300)
    (folder / "readme.txt").write_bytes(b"not an image")
    out = tmp_path / "out"
    stats = extract_features.run(["--input", str(folder / "*"), "--output", str(out), "--split", "test",
                                  "--drop-images", *ENCODER_ARGS])
    written = {r["image_id"].numpy().decode(): r
               for r in (records.parse_caption_example(s, FEATURE_DIM)
                         for s in tf.data.TFRecordDataset(glob.glob(str(out / "test-*.tfrecord*"))))}
    assert sorted(written) == [str(folder / "good.jpg"), str(folder / "good.png")]
    assert tuple(written[str(folder / "good.png")]["source_size"].numpy()) == (30, 56)
    assert written[str(folder / "good.jpg")]["image_jpeg"].numpy() == b""  # --drop-images
    dead = [json.loads(line) for path in glob.glob(str(out / "dead_letter-*.jsonl")) for line in open(path)]
    assert sorted((d["id"].rsplit("/", 1)[1], d["reason"]) for d in dead) == [
        ("corrupt.jpg", base.IMAGE_UNDECODABLE), ("readme.txt", base.IMAGE_UNDECODABLE)]
    assert stats["features"]["read"] == 4 == stats["features"]["written"] + len(dead)
    assert stats["counters"]["encoded"] == 2 and stats["counters"]["dead_lettered"] == 2


def test_feature_handler_in_run_inference_matches_the_encoder(tmp_path):
    encoder, _ = extract_features.load_encoder(SPEC)
    jpegs = {f"img{i}": cv2.imencode(".jpg", np.random.default_rng(i).integers(
        0, 255, (20 + 7 * i, 30, 3), dtype=np.uint8))[1].tobytes() for i in range(4)}
    expected = {k: _direct_features(encoder, v) for k, v in jpegs.items()}

    def close_to_expected(actual):  # batched and single-image runs agree to float32 round-off
        assert sorted(k for k, _ in actual) == sorted(expected)
        for key, features in actual:
            np.testing.assert_allclose(features, expected[key], rtol=1e-4, atol=1e-5)

    handler = KeyedModelHandler(extract_features.FeatureEncoder(SPEC, max_batch_size=4))
    with TestPipeline() as pipeline:
        features = (pipeline
                    | beam.Create([(inference.ImageKey(k, k), v) for k, v in jpegs.items()])
                    | RunInference(handler)
                    | beam.Map(lambda kv: (kv[0].id, kv[1].inference["features"])))
        assert_that(features, close_to_expected)


@pytest.mark.slow
def test_a_captioner_trains_on_the_extracted_features(features_dir, tmp_path):
    """Must-show 4: `python -m vcaption.train --data OUT --set data.feature_dim=F` on the output."""
    from vcaption import train

    out, stats = features_dir
    run_dir = tmp_path / "run"
    train.main(["--data", str(out), "--output", str(run_dir), "--epochs", "1", "--quiet",
                "--set", f"data.feature_dim={stats['feature_dim']}", "--set", "model.hidden_units=16",
                "--set", "model.embedding_dim=8", "--set", "model.image_embedding_dim=8",
                "--set", "decode.max_length=8", "--set", "train.baselines=False",
                "--set", "export.saved_models_dir=''"])
    metrics = json.load(open(run_dir / "metrics.json"))
    assert metrics["training"]["steps"] > 0 and "CIDEr" in metrics["model"]
    config = json.load(open(run_dir / "config.json"))
    assert config["data"]["feature_dim"] == FEATURE_DIM and config["data_dir"] == str(out)


def test_the_encoder_of_a_captioner_keras_file_is_used_at_its_image_size(tmp_path):
    from vcaption.bench.batch_caption import untrained_captioner

    model, _ = untrained_captioner(image_size=32)
    path = str(tmp_path / "model.keras")
    model.save(path)
    encoder, image_size = extract_features.load_encoder({"model": path})
    assert image_size == 32
    jpeg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (50, 40, 3), dtype=np.uint8))[1]
    np.testing.assert_allclose(_direct_features(encoder, jpeg.tobytes()),
                               _direct_features(model.encoder, jpeg.tobytes()), rtol=1e-5, atol=1e-6)
