"""beam_jobs.preprocess end to end on small inputs: accounting, dead letters, vocabulary, parity."""

from __future__ import annotations

import glob
import json
import pathlib
import struct

import apache_beam as beam
import cv2
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs import preprocess
from vcaption import data, images, records, text
from vcaption.datasets import base


def _jpeg(seed: int, gray: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (40, 56) if gray else (40, 56, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def _jpeg_claiming(height: int, width: int) -> bytes:
    """A valid small JPEG whose SOF header is patched to claim another size (a decompression bomb).

    Walks the marker segments to the start-of-frame header: searching for the first FF C0 bytes
    would depend on the encoder (progressive JPEGs use C2, and the bytes can occur elsewhere).
    """
    raw = _jpeg(7)
    offset = 2  # after SOI
    while raw[offset] == 0xFF:
        marker, length = raw[offset + 1], struct.unpack(">H", raw[offset + 2:offset + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            # SOF: length(2) precision(1) height(2) width(2) ...
            return raw[:offset + 5] + struct.pack(">HH", height, width) + raw[offset + 9:]
        offset += 2 + length
    raise AssertionError("no SOF segment found")


def _line(filename: str, split: str, captions: list[str], cocoid: int | None = None) -> bytes:
    entry = {"filename": filename, "split": split, "sentences": [{"raw": c} for c in captions]}
    if cocoid is not None:
        entry["cocoid"] = cocoid
    return json.dumps(entry).encode("utf-8")


@pytest.fixture()
def bad_inputs(tmp_path):
    """A Karpathy JSON Lines file with every kind of bad input next to three good images."""
    files = {
        "good.jpg": _jpeg(1), "good.png": _png(2), "gray.jpg": _jpeg(3, gray=True),
        "truncated.jpg": _jpeg(4)[:300], "corrupt.jpg": _jpeg(5)[:400] + b"\0" * 900,
        "text.jpg": b"this is not an image at all", "empty.jpg": b"",
        "bomb.jpg": _jpeg_claiming(30000, 30000),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    lines = [
        _line("good.jpg", "train", ["A red circle.", "!!!", "", "a red ball", "red ball"]),
        # A caption with bytes that are not UTF-8 (spliced in below).
        _line("good.png", "val", ["a blue square", "INVALID"]),
        _line("gray.jpg", "test", ["a gray picture", "a blue circle"]),
        _line("truncated.jpg", "train", ["a red circle"]),
        _line("corrupt.jpg", "train", ["a red circle"]),
        _line("text.jpg", "train", ["a red circle"]),
        _line("empty.jpg", "train", ["a red circle"]),
        _line("bomb.jpg", "train", ["a red circle"]),
        _line("missing.jpg", "train", ["a red circle"]),
        _line("good.jpg", "train", ["the same image again"]),  # duplicate id
        _line("punct.jpg", "train", ["...", "?!"]),             # nothing left after normalization
        b'{"filename": "broken.jpg", "split": "train", "sentences": [',  # malformed JSON line
    ]
    lines[1] = lines[1].replace(b"INVALID", b"caf\xff\xfe")
    path = tmp_path / "dataset.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, len(lines)


def _dead_letters(out) -> list[dict]:
    return [json.loads(line) for f in glob.glob(str(out / "dead_letter*.jsonl")) for line in open(f)]


def _records(out, split) -> list[dict]:
    return [records.parse_caption_example(s) for s in
            tf.data.TFRecordDataset(sorted(glob.glob(str(out / f"{split}-*.tfrecord*"))))]


def test_bad_inputs_are_dead_lettered_with_reasons_and_nothing_is_lost(bad_inputs, tmp_path):
    path, num_lines = bad_inputs
    out = tmp_path / "out"
    stats = preprocess.run(["--format", "karpathy", "--input", str(path), "--output", str(out),
                            "--image-size", "16", "--min-count", "1"])
    dead = _dead_letters(out)
    reasons = {(d["id"], d["reason"]) for d in dead}
    assert {("truncated.jpg", base.IMAGE_UNDECODABLE), ("corrupt.jpg", base.IMAGE_UNDECODABLE),
            ("text.jpg", base.IMAGE_UNDECODABLE), ("empty.jpg", base.IMAGE_UNDECODABLE),
            ("bomb.jpg", base.IMAGE_TOO_LARGE), ("missing.jpg", base.IMAGE_MISSING),
            ("good.jpg", base.DUPLICATE_ID), ("punct.jpg", base.NO_VALID_CAPTIONS)} <= reasons
    by_reason = {}
    for d in dead:
        by_reason.setdefault(d["reason"], []).append(d)
    assert len(by_reason[base.MALFORMED_JSON]) == 1
    assert len(by_reason[base.INVALID_UTF8]) == 1 and by_reason[base.INVALID_UTF8][0]["unit"] == "caption"
    # "!!!", "" of good.jpg and the two captions of punct.jpg.
    assert len(by_reason[base.CAPTION_EMPTY]) == 4
    assert all(d["detail"] and d["source"] for d in dead)
    assert "30000" in next(d["detail"] for d in dead if d["reason"] == base.IMAGE_TOO_LARGE)

    written = {split: _records(out, split) for split in base.SPLITS}
    assert {s: len(r) for s, r in written.items()} == {"train": 1, "val": 1, "test": 1, "test_novel": 0}
    # a split this dataset does not have leaves neither shards nor a stats entry
    assert not list(pathlib.Path(out).glob("test_novel-*")) and "test_novel" not in stats["examples"]
    assert stats["examples"] == {"train": 1, "val": 1, "test": 1}
    # Every input line ends in a record or in exactly one record-level dead letter.
    record_level = [d for d in dead if d["unit"] in ("image", "line")]
    assert sum(stats["examples"].values()) + len(record_level) == num_lines
    assert stats["dead_letter"]["total"] == len(dead)
    assert stats["dead_letter"]["by_reason"] == {r: len(v) for r, v in sorted(by_reason.items())}
    # Every caption of a written image is in its record or dead-lettered.
    train = written["train"][0]
    assert [c.decode() for c in train["captions"].numpy()] == ["A red circle.", "a red ball", "red ball"]
    gray = written["test"][0]
    assert tuple(gray["source_size"].numpy()) == (40, 56)
    assert images.decode_image(gray["image_jpeg"]).shape == (16, 16, 3)


def test_media_names_are_confined_and_read_failures_have_their_own_reasons(tmp_path):
    """A directory or an over-long name is not a corrupt image; names that leave --images or hold a
    NUL byte are never read (each of the files they point at exists and is a valid JPEG); one caption
    numbering across the reader and the text step."""
    media = tmp_path / "images"
    (media / "adir.jpg").mkdir(parents=True)
    for name in ("good.jpg", "other.jpg"):
        (media / name).write_bytes(_jpeg(len(name)))
    (tmp_path / "secret.jpg").write_bytes(_jpeg(9))
    long_name = "x" * 300 + ".jpg"
    lines = [
        _line("good.jpg", "train", ["a red circle"]),
        _line("adir.jpg", "train", ["a red circle"]),
        _line(long_name, "train", ["a red circle"]),
        _line("../secret.jpg", "train", ["a red circle"]),
        _line(str(tmp_path / "secret.jpg"), "train", ["a red circle"]),
        _line("good.jpg\0.png", "val", ["a red circle"]),
        # Caption 0 is refused by the reader, caption 1 by the text step: two ids, not "900044#0" twice.
        _line("other.jpg", "train", ["INVALID", "...", "a blue square"], cocoid=900044),
    ]
    lines[-1] = lines[-1].replace(b"INVALID", b"caf\xff")
    path = tmp_path / "dataset.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    stats = preprocess.run(["--format", "karpathy", "--input", str(path), "--images", str(media),
                            "--output", str(out), "--image-size", "16", "--min-count", "1"])
    dead = _dead_letters(out)
    assert {(d["unit"], d["id"]): d["reason"] for d in dead} == {
        ("image", "adir.jpg"): base.NOT_A_FILE,
        ("image", long_name): base.IMAGE_MISSING,
        ("image", "../secret.jpg"): base.PATH_OUTSIDE_IMAGES,
        ("image", str(tmp_path / "secret.jpg")): base.PATH_OUTSIDE_IMAGES,
        ("image", "good.jpg\0.png"): base.PATH_INVALID,
        ("caption", "900044#0"): base.INVALID_UTF8,
        ("caption", "900044#1"): base.CAPTION_EMPTY,
    }
    assert len({(d["unit"], d["id"]) for d in dead}) == len(dead)  # every dead letter names one input
    assert "is a directory" in next(d["detail"] for d in dead if d["reason"] == base.NOT_A_FILE)
    assert "too long" in next(d["detail"] for d in dead if d["reason"] == base.IMAGE_MISSING)
    # Only the two good images became records: nothing was read from outside --images.
    written = [r["image_id"].numpy().decode() for split in base.SPLITS for r in _records(out, split)]
    assert sorted(written) == ["900044", "good.jpg"] and stats["examples"]["val"] == 0
    assert sum(stats["examples"].values()) + len([d for d in dead if d["unit"] == "image"]) == len(lines)


def test_vocabulary_counts_train_only_and_respects_min_count(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(_jpeg(len(name)))
    lines = [
        _line("a.jpg", "train", ["red red red circle", "red circle square"]),
        _line("b.jpg", "val", ["zebra red circle"]),
        _line("c.jpg", "test", ["giraffe square"]),
    ]
    (tmp_path / "d.jsonl").write_bytes(b"\n".join(lines))
    out = tmp_path / "out"
    # Beam's own options pass through the job's strict parsing to the pipeline.
    stats = preprocess.run(["--format", "karpathy", "--input", str(tmp_path / "d.jsonl"),
                            "--output", str(out), "--image-size", "8", "--min-count", "2",
                            "--direct_num_workers", "1", "--direct_running_mode", "in_memory"])
    vocab = (out / "vocab.txt").read_text().splitlines()
    assert vocab == [*text.RESERVED_TOKENS, "red", "circle"]  # square: 1 < min-count; zebra: val only
    assert stats["vocab_words"] == 2
    counts = [int(c) for c in (out / "vocab_counts.txt").read_text().split()]
    assert counts == [0, 0, 2, 1, 4, 2]  # <end> once per train caption; <unk> = the one "square"
    val_ids = _records(out, "val")[0]["caption_ids"].to_list()[0]
    assert val_ids == [text.START_ID, text.UNK_ID, 4, 5, text.END_ID]  # zebra -> <unk>
    test_ids = _records(out, "test")[0]["caption_ids"].to_list()[0]
    assert test_ids == [text.START_ID, text.UNK_ID, text.UNK_ID, text.END_ID]


def test_build_vocabulary_orders_by_count_then_word():
    tokens, counts = preprocess.build_vocabulary(
        [("b", 3), ("a", 3), ("c", 9), ("d", 1), (text.END, 4)], min_count=2)
    assert tokens == [*text.RESERVED_TOKENS, "c", "a", "b"]
    assert counts == [0, 0, 4, 1, 9, 3, 3]


class _BeamSidePath(beam.DoFn):
    """What the Beam job runs per element: the text and image functions of vcaption."""

    def __init__(self, vocab_tokens, image_size):
        self.vocab_tokens, self.image_size = vocab_tokens, image_size

    def setup(self):
        self.vocab = text.Vocabulary(tokens=self.vocab_tokens)

    def process(self, element):
        caption, image_bytes = element
        ids = self.vocab.encode(tf.constant([caption]), 16).to_list()[0]
        pixels = images.preprocess_image(tf.constant(image_bytes), self.image_size).numpy()
        yield caption, (ids, pixels.tobytes())


def test_beam_tfdata_and_tf_function_agree_on_ids_and_pixels(tmp_path, coco_mini_jpegs):
    vocab_tokens = [*text.RESERVED_TOKENS, "a", "red", "circle", "man", "dog", "café"]
    image_files = [_jpeg(11), _jpeg(12, gray=True), _png(13)] + coco_mini_jpegs
    captions = ["A red circle!", "a MAN's dog...", "Café  dog", "a\tred  circle", "unknown words"]
    pairs = [(captions[i % len(captions)], image_files[i]) for i in range(len(image_files))]
    size = 24

    with TestPipeline() as p:
        beam_side = p | beam.Create(pairs) | beam.ParDo(_BeamSidePath(vocab_tokens, size))
        beam_results = beam_side | beam.combiners.ToList()

        def check(results):
            got = dict(results)
            vocab = text.Vocabulary(tokens=vocab_tokens)
            ds = tf.data.Dataset.from_tensor_slices(([c for c, _ in pairs], [b for _, b in pairs])).map(
                lambda c, b: (vocab.encode(c[tf.newaxis], 16)[0], images.preprocess_image(b, size)))

            @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)])
            def graph(c, b):
                return vocab.encode(c[tf.newaxis], 16)[0], images.preprocess_image(b, size)

            for (caption, image_bytes), (ds_ids, ds_pixels) in zip(pairs, ds):
                beam_ids, beam_pixels = got[caption]
                fn_ids, fn_pixels = graph(tf.constant(caption), tf.constant(image_bytes))
                assert beam_ids == ds_ids.numpy().tolist() == fn_ids.numpy().tolist()
                assert beam_pixels == ds_pixels.numpy().tobytes() == fn_pixels.numpy().tobytes()

        assert_that(beam_results, lambda r: check(r[0]))
    assert text.Vocabulary(tokens=vocab_tokens).encode(tf.constant(["a MAN's dog..."]), 16).to_list() == \
        [[1, 4, 3, 8, 2]]  # "mans" is not "man": discarding, not splitting, the apostrophe


def test_assert_that_sees_dead_letter_tags_in_a_test_pipeline():
    """The DoFns tag bad elements instead of failing the bundle (TestPipeline + assert_that)."""
    example = base.CaptionedImage("x", "train", "/nonexistent/x.jpg", ("...",))
    with TestPipeline() as p:
        out = (p | beam.Create([example])
               | beam.ParDo(preprocess.PrepareText()).with_outputs(preprocess.DEAD, main="ok"))
        assert_that(out.ok, equal_to([]), label="no_prepared")
        assert_that(out[preprocess.DEAD] | beam.Map(lambda d: d.reason),
                    equal_to([base.CAPTION_EMPTY, base.NO_VALID_CAPTIONS]), label="dead")


@pytest.mark.shared_data
def test_coco_mini_with_instances_becomes_one_record_per_captioned_image(coco_mini, tmp_path):
    out = tmp_path / "coco"
    stats = preprocess.run(["--format", "coco", "--input",
                            f"{coco_mini}/annotations/captions_train2017.json,"
                            f"{coco_mini}/annotations/captions_val2017.json",
                            "--output", str(out), "--image-size", "32", "--min-count", "2"])
    assert stats["examples"] == {"train": 80, "val": 79, "test": 0}
    assert stats["captions"] == {"train": 400, "val": 395, "test": 0}
    assert stats["dead_letter"]["total"] == 0
    histogram = stats["caption_length_histogram"]
    assert sum(histogram.values()) == 400
    val = _records(out, "val")
    assert len({r["image_id"].numpy() for r in val}) == 79
    listed = json.loads((coco_mini / "annotations" / "captions_val2017.json").read_text())["images"]
    sizes = {str(i["id"]).encode(): (i["height"], i["width"]) for i in listed}
    for record in val:
        assert tuple(record["source_size"].numpy()) == sizes[record["image_id"].numpy()]
        assert images.decode_image(record["image_jpeg"]).shape == (32, 32, 3)
    with_regions = [r for r in val if r["region_boxes"].shape[0] > 0]
    assert len(with_regions) > 70
    boxes = np.concatenate([r["region_boxes"].numpy() for r in with_regions])
    assert boxes.min() >= 0 and boxes.max() <= 1 and np.all(boxes[:, 2] >= boxes[:, 0])
    vocab = (out / "vocab.txt").read_text().splitlines()
    assert stats["vocab_words"] == len(vocab) - 4


def test_records_read_back_through_make_dataset_detokenize_to_normalized_captions(shapes_records,
                                                                                 shapes_world):
    source = json.loads((shapes_world / "dataset_shapes.json").read_text())
    normalized = {text.normalized_caption(s["raw"]) for img in source["images"]
                  if img["split"] == "train" for s in img["sentences"]}
    vocab = text.Vocabulary(str(shapes_records / "vocab.txt"))
    ds = data.make_dataset(str(shapes_records), "train", "caption", batch_size=8, image_size=32, seed=0)
    inputs, targets = next(iter(ds))
    assert inputs["visual"].dtype == tf.uint8 and inputs["visual"].shape[1:] == (32, 32, 3)
    assert inputs["caption_in"].shape == targets.shape
    np.testing.assert_array_equal(inputs["caption_in"][:, 0], text.START_ID)
    decoded = vocab.decode(inputs["caption_in"]).numpy()
    assert {d.decode() for d in decoded} <= normalized
    # Targets are the inputs shifted by one, ending with <end>.
    np.testing.assert_array_equal(inputs["caption_in"][:, 1:], targets[:, :-1])
    assert np.all(np.any(targets == text.END_ID, axis=1))
