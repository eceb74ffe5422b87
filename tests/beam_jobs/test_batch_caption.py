"""beam_jobs.batch_caption: accounting, dead letters, per-element isolation, parity with the SavedModel."""

from __future__ import annotations

import glob
import json
import pathlib

import apache_beam as beam
import cv2
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import batch_caption, inference
from vcaption.bench.batch_caption import export_untrained_captioner
from vcaption.datasets import base


def _jpeg(seed: int, height: int, width: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (30, 45, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> str:
    """An untrained small LRCN-2f exported once (beam 3, 2-best)."""
    return export_untrained_captioner(str(tmp_path_factory.mktemp("saved_models")))


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(export_dir)


def direct_captions(loaded, encoded: bytes) -> dict:
    """The reference: the SavedModel's serving_default called directly on one image's bytes."""
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([encoded]))
    return batch_caption.n_best_lists(out["captions"].numpy(), out["scores"].numpy())[0]


def assert_same_captions(rows: list[dict], loaded, files: dict) -> None:
    for row in rows:
        expected = direct_captions(loaded, files[row["id"]])
        assert row["captions"] == expected["captions"], row["id"]
        np.testing.assert_allclose(row["scores"], expected["scores"], rtol=1e-4, atol=1e-4)


def read_jsonl(pattern: str) -> list[dict]:
    return [json.loads(line) for path in sorted(glob.glob(pattern)) for line in open(path)]


@pytest.fixture()
def mixed_inputs(tmp_path) -> tuple[pathlib.Path, dict]:
    """Good images of several sizes and formats next to a corrupt, a truncated, an empty and a
    non-image file."""
    folder = tmp_path / "images"
    folder.mkdir()
    contents = {"a.jpg": _jpeg(1, 40, 56), "b.jpg": _jpeg(2, 64, 33), "c.png": _png(3),
                "d.jpg": _jpeg(4, 20, 20), "e.jpg": _jpeg(5, 90, 70),
                "corrupt.jpg": _jpeg(6, 40, 40)[:400] + b"\0" * 600, "truncated.jpg": _jpeg(7, 40, 40)[:200],
                "empty.jpg": b"", "notes.txt": b"this is not an image at all\n"}
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return folder, {str(folder / name): content for name, content in contents.items()}


BAD = {"corrupt.jpg", "truncated.jpg", "empty.jpg", "notes.txt"}


def test_corrupt_and_non_image_files_become_dead_letters_and_the_rest_is_captioned(
        export_dir, loaded, mixed_inputs, tmp_path):
    folder, files = mixed_inputs
    # Directories the pattern matches: `*` does not reach into them, so they are dead letters
    # (fileio.MatchFiles lists files only and would leave them out without a word).
    (folder / "album.jpg").mkdir()
    (folder / "more").mkdir()
    (folder / "more" / "inside.jpg").write_bytes(_jpeg(8, 20, 20))
    directories = {"album.jpg", "more"}
    prefix = str(tmp_path / "out" / "captions")
    stats = batch_caption.run(["--model", export_dir, "--input", str(folder / "*"), "--output", prefix,
                               "--batch-size", "3"])

    dead = read_jsonl(prefix + ".dead_letter-*.jsonl")
    assert {pathlib.Path(d["id"]).name: d["reason"] for d in dead} == {
        **{name: base.IMAGE_UNDECODABLE for name in BAD}, **{name: base.NOT_A_FILE for name in directories}}
    assert "not a JPEG, PNG, GIF or BMP" in next(d["detail"] for d in dead if d["id"].endswith("notes.txt"))
    assert "is a directory" in next(d["detail"] for d in dead if d["id"].endswith("more"))
    rows = read_jsonl(prefix + "-*.jsonl")
    assert sorted(pathlib.Path(r["id"]).name for r in rows) == ["a.jpg", "b.jpg", "c.png", "d.jpg", "e.jpg"]
    assert all(len(r["captions"]) == len(r["scores"]) == 2 for r in rows)
    assert len({tuple(r["scores"]) for r in rows}) == len(rows)  # the images are told apart
    # Every input is accounted for, in the stats file and in the Beam counters.
    inputs = len(files) + len(directories)
    assert stats["read"] == inputs == stats["captioned"] + stats["dead_lettered"]["total"]
    assert stats["dead_lettered"]["by_reason"] == {base.IMAGE_UNDECODABLE: len(BAD),
                                                   base.NOT_A_FILE: len(directories)}
    counters = stats["counters"]
    assert (counters["read"], counters["captioned"], counters["dead_lettered"]) == (
        inputs, len(files) - len(BAD), len(BAD) + len(directories))
    assert stats["n_best"] == 2
    assert_same_captions(rows, loaded, files)


def test_the_directories_a_pattern_matches_are_found(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    (tmp_path / "sub.jpg" / "b.jpg").write_bytes(b"x")
    assert inference.matched_directories(str(tmp_path / "*.jpg")) == [str(tmp_path / "sub.jpg")]
    assert inference.matched_directories(str(tmp_path / "a.jpg")) == []
    # `**` reads the files under the directories it matches: none is left out.
    assert inference.matched_directories(str(tmp_path / "**")) == []


def test_a_bad_image_in_a_batch_is_isolated_by_the_handler_without_validation(export_dir, loaded):
    """RunInference straight on raw bytes (no ValidateImages): the batch with the bad image fails,
    the handler retries its elements one by one, and only the bad one is lost — to a dead letter."""
    good = {f"good{i}": _jpeg(10 + i, 24 + 4 * i, 30) for i in range(5)}
    keyed = [(inference.ImageKey(k, k), v) for k, v in good.items()]
    keyed.insert(2, (inference.ImageKey("bad", "bad"), b"not an image"))
    handler = KeyedModelHandler(
        batch_caption.SavedModelCaptioner(export_dir, min_batch_size=6, max_batch_size=6))

    expected = {k: direct_captions(loaded, v) for k, v in good.items()}

    def same_as_direct(rows):  # captions equal; scores to float32 round-off (batched vs single)
        assert sorted(r["id"] for r in rows) == sorted(expected)
        for row in rows:
            assert row["captions"] == expected[row["id"]]["captions"]
            np.testing.assert_allclose(row["scores"], expected[row["id"]]["scores"], rtol=1e-4, atol=1e-4)

    pipeline = TestPipeline()
    routed = (pipeline
              | beam.Create(keyed)
              | RunInference(handler)
              | beam.ParDo(batch_caption.RouteResults()).with_outputs(inference.DEAD, main="captions"))
    assert_that(routed.captions, same_as_direct)
    assert_that(routed[inference.DEAD] | beam.Map(lambda d: (d.id, d.reason)),
                equal_to([("bad", inference.MODEL_FAILED)]), label="DeadLetters")
    result = pipeline.run()
    result.wait_until_finish()
    counters = inference.query_counters(result, batch_caption.NAMESPACE)
    assert counters["batches_retried_per_element"] >= 1 and counters["num_inferences"] == 6


def test_caption_records_to_coco_results(export_dir, shapes_records, tmp_path):
    prefix = str(tmp_path / "coco" / "results")
    pattern = str(shapes_records / "test-*.tfrecord*")
    stats = batch_caption.run(["--model", export_dir, "--input", pattern, "--output", prefix,
                               "--format", "coco"])
    results = json.load(open(prefix + ".json"))
    record_ids = sorted(int(tf.train.Example.FromString(r.numpy()).features.feature["image/id"]
                            .bytes_list.value[0]) for r in tf.data.TFRecordDataset(glob.glob(pattern)))
    assert [r["image_id"] for r in results] == record_ids  # numeric, sorted, one per record
    assert all(isinstance(r["caption"], str) and r["caption"] for r in results)
    assert stats["read"] == stats["captioned"] == len(record_ids) and stats["dead_lettered"]["total"] == 0


def test_coco_image_ids_and_beam_size_rule():
    assert batch_caption.coco_image_id("gs://b/val2017/000000397133.jpg") == 397133
    assert batch_caption.coco_image_id("COCO_val2014_000000000042.jpg") == 42
    assert batch_caption.coco_image_id("/x/my_photo.jpg") == "/x/my_photo.jpg"
    with pytest.raises(SystemExit):  # an export's width is fixed: asking for another is an error
        batch_caption.parse_args(["--model", "m", "--input", "x", "--output", "o", "--beam-size", "5"])


def test_export_without_an_image_signature_is_refused_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved_model.pb"):
        batch_caption.check_captioner_export(str(tmp_path))


@pytest.mark.slow
def test_shapes_and_coco_mini_all_accounted_for_and_equal_to_direct_calls(export_dir, loaded, coco_mini,
                                                                           tmp_path):
    """Must-show 1 at a test-sized count (the README gives the 2,000-image command)."""
    from vcaption.datasets import shapes

    shapes.generate(str(tmp_path / "shapes"), num_images=60, num_videos=0, image_size=64)
    patterns = [str(tmp_path / "shapes" / "images" / "*"), str(coco_mini / "val2017" / "*.jpg"),
                str(coco_mini / "train2017" / "*.jpg")]
    files = {path: open(path, "rb").read() for pattern in patterns for path in glob.glob(pattern)}
    prefix = str(tmp_path / "out" / "captions")
    args = ["--model", export_dir, "--output", prefix, "--batch-size", "16"]
    for pattern in patterns:
        args += ["--input", pattern]
    stats = batch_caption.run(args)
    rows, dead = read_jsonl(prefix + "-*.jsonl"), read_jsonl(prefix + ".dead_letter-*.jsonl")
    assert stats["read"] == len(files) == len(rows) + len(dead)
    assert sorted([r["id"] for r in rows] + [d["id"] for d in dead]) == sorted(files)
    assert_same_captions(rows, loaded, files)


@pytest.mark.slow
def test_run_with_beam_size_exports_that_width_and_captions_with_it(tmp_path, mixed_inputs):
    from vcaption.bench.batch_caption import untrained_captioner

    model, tokens = untrained_captioner()
    run_dir = tmp_path / "run"
    (run_dir / "data").mkdir(parents=True)  # a run keeps its data's assets in RUN/data/
    (run_dir / "data" / "vocab.txt").write_text("\n".join(tokens) + "\n")
    model.save(str(run_dir / "model.keras"))
    (run_dir / "config.json").write_text(json.dumps({
        "name": "tiny", "data_dir": str(run_dir),
        "decode": {"beam_size": 3, "max_length": 8, "alpha": 0.0, "n_best": 3}}))
    folder, files = mixed_inputs
    prefix = str(tmp_path / "out" / "captions")
    stats = batch_caption.run(["--run", str(run_dir), "--beam-size", "1", "--input", str(folder / "*.jpg"),
                               "--output", prefix])
    assert stats["model"] == prefix + ".export/tiny/1" and stats["n_best"] == 1
    rows = read_jsonl(prefix + "-*.jsonl")
    assert len(rows) == 4 and all(len(r["captions"]) == 1 for r in rows)
    assert_same_captions(rows, tf.saved_model.load(stats["model"]), files)
