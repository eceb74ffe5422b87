"""vcaption.data element structures for the VQA and video tasks, on the tiny built-in world."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import preprocess
from vcaption import data, records, text


@pytest.fixture(scope="module")
def vqa_records(shapes_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("vqa_records")
    preprocess.run(["--format", "vqa", "--input", str(shapes_world / "vqa"), "--output", str(out),
                    "--image-size", "32", "--min-count", "1", "--top-answers", "10"])
    return out


@pytest.fixture(scope="module")
def video_records(shapes_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("video_records")
    preprocess.run(["--format", "msvd", "--input", str(shapes_world / "msrvtt" / "videodatainfo.json"),
                    "--output", str(out), "--image-size", "24", "--min-count", "1", "--max-frames", "20"])
    return out


def test_vqa_elements_carry_soft_scores_over_the_top_answers(vqa_records):
    answers = (vqa_records / "answers.txt").read_text().splitlines()
    assert len(answers) == 10
    inputs, scores = next(iter(data.make_dataset(str(vqa_records), "train", "vqa", batch_size=16,
                                                 image_size=32, answer_vocab_size=len(answers), seed=0)))
    assert inputs["visual"].shape == (16, 32, 32, 3) and inputs["question"].dtype == tf.int32
    assert scores.shape == (16, 10)
    assert np.all((scores.numpy() >= 0) & (scores.numpy() <= 1))
    # Most shapes-world questions have a majority answer within the top 10: full credit.
    assert np.mean(scores.numpy().max(axis=1) == 1.0) > 0.5


def test_video_elements_are_fixed_length_clips_with_labels_and_captions(video_records):
    labels = (video_records / "labels.txt").read_text().splitlines()
    vocab = text.Vocabulary(str(video_records / "vocab.txt"))
    stats = json.loads((video_records / "stats.json").read_text())
    assert sum(stats["examples"].values()) == 12 and stats["dead_letter"]["total"] == 0
    inputs, targets = next(iter(data.make_dataset(str(video_records), "train", "video", batch_size=4,
                                                  image_size=24, num_frames=16, seed=0)))
    assert inputs["frames"].shape == (4, 16, 24, 24, 3) and inputs["frames"].dtype == tf.uint8
    assert set(targets["label"].numpy().tolist()) <= set(range(len(labels)))
    captions = [c.decode() for c in vocab.decode(targets["caption_in"]).numpy()]
    assert all(captions) and targets["caption_in"].shape == targets["caption_out"].shape
    # Short videos are padded by repeating their last frame.
    short = data.make_dataset(str(video_records), "val", "video", batch_size=1, image_size=24, num_frames=40)
    frames = next(iter(short))[0]["frames"][0].numpy()
    np.testing.assert_array_equal(frames[-1], frames[-2])


@pytest.mark.parametrize("training", [True, False])
def test_grouped_caption_batches_hold_each_image_once_followed_by_k_of_its_captions(shapes_records, training):
    k, batch = 5, 20
    vocab = text.Vocabulary(str(shapes_records / "vocab.txt"))
    references = {}  # image pixels -> that image's captions (sorted), from the evaluation pipeline
    for element in data.make_dataset(str(shapes_records), "train", "caption_eval", batch_size=8, image_size=32):
        for visual, refs in zip(element["visual"].numpy(), element["references"].to_list()):
            references[visual.tobytes()] = sorted(text.normalized_caption(r) for r in refs)
    dataset = data.make_dataset(str(shapes_records), "train", "caption", batch_size=batch, image_size=32,
                                training=training, seed=0, captions_per_image=k)
    seen = 0
    for inputs, targets in dataset:
        images = inputs["visual"].numpy()
        assert inputs["caption_in"].shape[0] == k * images.shape[0] == targets.shape[0]
        assert images.shape[0] <= batch // k
        captions = [c.decode() for c in vocab.decode(targets).numpy()]
        for index, image in enumerate(images):
            mine = captions[index * k:(index + 1) * k]
            # Shapes images have exactly 5 captions: K = 5 of them means all of them, each once.
            assert sorted(mine) == references[image.tobytes()]
        seen += images.shape[0]
    assert seen == len(references)  # every training image once per pass


def test_blind_datasets_carry_a_zero_feature_and_the_same_captions(shapes_records):
    def elements(blind):
        return list(data.make_dataset(str(shapes_records), "val", "caption_eval", batch_size=8,
                                      image_size=32, blind=blind))

    seeing, blind = elements(False), elements(True)
    assert seeing[0]["visual"].shape[1:] == (32, 32, 3)
    for a, b in zip(seeing, blind, strict=True):
        assert b["visual"].shape == (a["visual"].shape[0], data.BLIND_FEATURE_DIM)
        assert not np.any(b["visual"].numpy())
        np.testing.assert_array_equal(a["image_id"].numpy(), b["image_id"].numpy())
        assert a["references"].to_list() == b["references"].to_list()
    inputs, _ = next(iter(data.make_dataset(str(shapes_records), "train", "caption", batch_size=8,
                                            image_size=32, seed=0, blind=True)))
    assert inputs["visual"].shape == (8, data.BLIND_FEATURE_DIM)


def test_blind_datasets_decode_no_image(shapes_records, tmp_path):
    # Records whose JPEGs are garbage: decoding any of them fails, so only a blind pipeline that
    # never decodes can read them.
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("vocab.txt", "stats.json"):
        (corrupt / name).write_bytes((shapes_records / name).read_bytes())
    with tf.io.TFRecordWriter(str(corrupt / "val-00000-of-00001.tfrecord")) as writer:
        for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(str(shapes_records / "val-*"))):
            example = tf.train.SequenceExample.FromString(serialized.numpy())
            example.context.feature[records.IMAGE_ENCODED].bytes_list.value[0] = b"not a jpeg"
            writer.write(example.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError):
        list(data.make_dataset(str(corrupt), "val", "caption_eval", batch_size=8, image_size=32))
    assert len(list(data.make_dataset(str(corrupt), "val", "caption_eval", batch_size=8, image_size=32,
                                      blind=True)))


def test_normalized_captions_of_many_strings_equal_one_at_a_time():
    captions = ["A Man's black-and-white  DOG.", "Café\u00a0au lait", "", "two\tshapes: 3 circles"]
    assert text.normalized_captions(captions) == [text.normalized_caption(c) for c in captions]
    assert text.normalized_captions(captions) == ["a mans blackandwhite dog", "café au lait", "",
                                                   "two shapes 3 circles"]
    assert text.normalized_captions([]) == []
    assert text.normalized_caption_lists([captions[:1], [], captions[1:]]) == [
        ["a mans blackandwhite dog"], [], ["café au lait", "", "two shapes 3 circles"]]


def test_word_dropout_replaces_only_words_of_the_inputs(shapes_records):
    ids = tf.constant([[1, 5, 6, 7, 0, 0], [1, 8, 9, 3, 0, 0]], tf.int32)
    all_dropped = data.drop_words(ids, 1.0).numpy().tolist()
    assert all_dropped == [[1, 3, 3, 3, 0, 0], [1, 3, 3, 3, 0, 0]]
    assert data.drop_words(ids, 0.0).numpy().tolist() == ids.numpy().tolist()
    plain = data.make_dataset(str(shapes_records), "train", "caption", batch_size=8, image_size=32,
                              training=False)
    dropped = data.make_dataset(str(shapes_records), "train", "caption", batch_size=8, image_size=32,
                                training=False, word_dropout=0.5, seed=1)
    (x, y), (xd, yd) = next(iter(plain)), next(iter(dropped))
    assert np.array_equal(y, yd)  # targets whole
    changed = x["caption_in"].numpy() != xd["caption_in"].numpy()
    assert changed.any() and np.all(xd["caption_in"].numpy()[changed] == text.UNK_ID)
    assert np.all(xd["caption_in"].numpy()[:, 0] == text.START_ID)
    with pytest.raises(ValueError, match="word_dropout"):
        data.make_dataset(str(shapes_records), "train", "vqa", answer_vocab_size=3, word_dropout=0.1)
