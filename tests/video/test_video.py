"""Video: flow images, MSR-VTT/MSVD ingest end to end with dead letters, the activity and description
models (step API = full forward, any beam width), and the hermetic exports in a fresh process."""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf

from beam_jobs import preprocess
from helpers import TF_ONLY_PREAMBLE, assert_steps_reproduce_forward, run_batching_test, run_saving_test
from vcaption import data, decoding, images, records, text
from vcaption.video import export as export_video
from vcaption.config import DecodeConfig
from vcaption.datasets import base, shapes
from vcaption.video.lrcn import LRCNActivityRecognizer, VideoLRCNCaptioner, clip_average_probabilities
from vcaption.video.s2vt import S2VTCaptioner

from conftest import FIXTURES as _FIXTURES  # noqa: E402

FIXTURES = str(_FIXTURES / "formats")
SIZE, FRAMES = 24, 16


def _moving_square(dx: int, dy: int, count: int = 6, size: int = 32) -> list[np.ndarray]:
    frames = []
    for t in range(count):
        frame = np.zeros((size, size, 3), np.uint8)
        x, y = 8 + dx * t, 8 + dy * t
        frame[y:y + 8, x:x + 8] = (255, 200, 40)
        frames.append(frame)
    return frames


# --- flow images ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dx, dy", [(1, 0), (0, 1), (-1, 0)])
def test_flow_images_encode_direction_around_128_and_magnitude(dx, dy):
    flow = images.optical_flow_images(_moving_square(dx, dy), scale=16.0)
    assert len(flow) == 6 and flow[0].shape == (32, 32, 3) and flow[0].dtype == np.uint8
    region = np.stack(flow[:-1])[:, 8:18, 8:18].astype(float)  # around the square's path
    moving = region[..., 2] > 4  # the magnitude channel marks where something moves
    assert moving.mean() > 0.2
    mean_x, mean_y = region[..., 0][moving].mean() - 128, region[..., 1][moving].mean() - 128
    assert np.sign(round(mean_x / 4)) == dx and np.sign(round(mean_y / 4)) == dy
    np.testing.assert_array_equal(flow[-1], flow[-2])  # the last frame repeats the previous flow


def test_static_video_has_neutral_flow():
    flow = images.optical_flow_images(_moving_square(0, 0, count=3))
    assert np.abs(np.stack(flow)[..., :2].astype(int) - 128).max() <= 1
    assert np.stack(flow)[..., 2].max() <= 1
    with pytest.raises(ValueError, match="at least 2 frames"):
        images.optical_flow_images(_moving_square(1, 0, count=1))


def test_video_record_round_trip_with_flow():
    jpeg = images.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy()
    serialized = records.encode_video_example("v", [jpeg] * 3, ["a cat"], [[1, 5, 2]], "growing", 4,
                                              flow_jpeg=[jpeg] * 3)
    parsed = records.parse_video_example(tf.constant(serialized))
    assert parsed["flow_jpeg"].shape == (3,) and int(parsed["label_id"]) == 4
    without = records.parse_video_example(tf.constant(records.encode_video_example(
        "v", [jpeg], ["a cat"], [[1, 5, 2]])))
    assert without["flow_jpeg"].shape == (0,)


# --- ingest end to end: real-format JSON + real video files ---------------------------------------
@pytest.fixture(scope="module")
def msrvtt_ingest(tmp_path_factory):
    """The MSR-VTT fixture JSON with a real AVI (video0), the fixture's zero-length video1.mp4 and an
    unreadable video2.mp4, through `beam_jobs.preprocess --format msvd --optical-flow`."""
    root = tmp_path_factory.mktemp("msrvtt")
    shutil.copytree(os.path.join(FIXTURES, "msrvtt"), root / "msrvtt")
    video = shapes.Video("moving right", shapes.VideoObject("circle", "red", 0.2, 0.3, 0.25),
                         shapes.VideoObject("circle", "red", 0.8, 0.3, 0.25))
    shapes.write_video(shapes.render_video(video, 32, 20), str(root / "msrvtt" / "videos" / "video0.avi"))
    assert os.path.getsize(root / "msrvtt" / "videos" / "video1.mp4") == 0
    (root / "msrvtt" / "videos" / "video2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    out = root / "records"
    stats = preprocess.run(["--format", "msvd", "--input", str(root / "msrvtt" / "videodatainfo.json"),
                            "--output", str(out), "--image-size", str(SIZE), "--min-count", "1",
                            "--max-frames", "8", "--frame-stride", "2", "--optical-flow"])
    return out, stats


def test_msrvtt_videos_become_records_with_frames_and_flow(msrvtt_ingest):
    out, stats = msrvtt_ingest
    assert stats["examples"] == {"train": 1, "val": 0, "test": 0}
    parsed = [records.parse_video_example(s) for s in tf.data.TFRecordDataset(
        glob.glob(str(out / "train-*.tfrecord")))]
    assert len(parsed) == 1
    video = parsed[0]
    assert video["video_id"].numpy() == b"video0" and video["label"].numpy() == b"vehicles/autos"
    # 20 frames, stride 2 -> 10, at most 8 kept; one flow image per frame.
    assert video["frames_jpeg"].shape == (8,) and video["flow_jpeg"].shape == (8,)
    flow = images.preprocess_image(video["flow_jpeg"][0], SIZE).numpy().astype(float)
    assert flow[..., 0].max() > 140  # moving right: x flow above 128 somewhere
    inputs, targets = next(iter(data.make_dataset(str(out), "train", "video", batch_size=1,
                                                  image_size=SIZE, num_frames=8, flow=True)))
    assert inputs["frames"].shape == inputs["flow"].shape == (1, 8, SIZE, SIZE, 3)


def test_unreadable_and_zero_length_videos_are_dead_letters_with_reasons(msrvtt_ingest):
    out, stats = msrvtt_ingest
    dead = [json.loads(line) for path in glob.glob(str(out / "dead_letter-*.jsonl"))
            for line in open(path)]
    unreadable = {d["id"]: d for d in dead if d["reason"] == base.VIDEO_UNREADABLE}
    assert set(unreadable) == {"video1", "video2"}
    detail = unreadable["video1"]["detail"]
    assert "video1.mp4" in detail and "cannot be opened" in detail
    assert "video2.mp4" in unreadable["video2"]["detail"]
    assert stats["dead_letter"]["by_reason"][base.VIDEO_UNREADABLE] == 2
    # Every listed video ends somewhere: 1 record + 2 dead videos = the 3 of the JSON.
    assert sum(stats["examples"].values()) + stats["dead_letter"]["by_unit"]["video"] == 3


def test_msvd_caption_map_end_to_end(tmp_path):
    shutil.copy(os.path.join(FIXTURES, "msvd", "captions.json"), tmp_path / "captions.json")
    (tmp_path / "YouTubeClips").mkdir()
    shapes.write_video(np.stack(_moving_square(0, 1, count=6)),
                       str(tmp_path / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi"))
    stats = preprocess.run(["--format", "msvd", "--input", str(tmp_path / "captions.json"),
                            "--output", str(tmp_path / "out"), "--image-size", str(SIZE),
                            "--min-count", "1", "--reader-option", "split=train"])
    assert stats["examples"]["train"] == 1
    assert stats["dead_letter"]["by_reason"] == {base.VIDEO_UNREADABLE: 1}  # the clip that is absent


def test_msvd_list_format_end_to_end(tmp_path):
    """`--format msvd` on the public releases' list form, one file per split, with a directory in
    place of one clip (not a file) and another clip absent (unreadable)."""
    for name in ("msvd_train.json", "msvd_test.json"):
        shutil.copy(os.path.join(FIXTURES, "msvd", name), tmp_path / name)
    clips = tmp_path / "YouTubeClips"
    clips.mkdir()
    shapes.write_video(np.stack(_moving_square(0, 1, count=6)), str(clips / "-4wsuPCjDBc_5_15.avi"))
    (clips / "-7KMZQEsJW4_205_208.avi").mkdir()
    inputs = f"{tmp_path / 'msvd_train.json'},{tmp_path / 'msvd_test.json'}"
    stats = preprocess.run(["--format", "msvd", "--input", inputs, "--output", str(tmp_path / "out"),
                            "--image-size", str(SIZE), "--min-count", "1"])
    assert stats["examples"] == {"train": 1, "val": 0, "test": 0}
    dead = [json.loads(line) for path in glob.glob(str(tmp_path / "out" / "dead_letter-*.jsonl"))
            for line in open(path)]
    assert {d["id"]: d["reason"] for d in dead} == {
        "-7KMZQEsJW4_205_208": base.NOT_A_FILE, "0lh_UWF9ZP4_62_69": base.VIDEO_UNREADABLE}
    (record,) = [records.parse_video_example(s) for s in tf.data.TFRecordDataset(
        glob.glob(str(tmp_path / "out" / "train-*.tfrecord")))]
    assert record["video_id"].numpy() == b"-4wsuPCjDBc_5_15" and record["captions"].shape == (2,)


# --- models ----------------------------------------------------------------------------------------
def _frames(batch=2, count=FRAMES, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, count, SIZE, SIZE, 3)).astype("float32")


def test_activity_recognizer_predicts_every_frame_and_averages_clips():
    model = LRCNActivityRecognizer(6, stream="flow", hidden_units=8, image_size=SIZE, cnn_features=16,
                                   cnn_filters=(4, 8))
    assert model.get_config()["hidden_units"] == 8
    assert LRCNActivityRecognizer(6, stream="flow").hidden_units == 1024  # LRCN §4 defaults
    assert LRCNActivityRecognizer(6).hidden_units == 256
    frames = _frames(count=24)
    logits = model({"flow": frames[:, :16]}, training=False)
    assert logits.shape == (2, 16, 6)
    probabilities = clip_average_probabilities(lambda c: model({"flow": c}, training=False), frames)
    by_hand = np.mean([tf.nn.softmax(model({"flow": frames[:, s:s + 16]}, training=False)).numpy()
                       for s in (0, 8)], axis=(0, 2))  # clips at 0 and 8, every frame
    np.testing.assert_allclose(probabilities.numpy(), by_hand, atol=1e-5)
    single = LRCNActivityRecognizer(6, single_frame=True, image_size=SIZE, cnn_features=16,
                                    cnn_filters=(4, 8))
    assert single.recurrence is None and not any("recurrence" in w.path for w in single.weights)
    # Without an LSTM a frame's prediction does not depend on the other frames.
    a = single({"frames": frames[:, :4]}, training=False).numpy()
    b = single({"frames": np.concatenate([frames[:, :2], frames[:, 10:12]], 1)}, training=False).numpy()
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-5)
    with pytest.raises(ValueError, match="stream"):
        LRCNActivityRecognizer(6, stream="depth")


def test_activity_recognizer_saves_and_loads(tmp_path):
    model = LRCNActivityRecognizer(4, hidden_units=8, image_size=SIZE, cnn_features=16, cnn_filters=(4, 8))
    run_saving_test(model, {"frames": _frames(count=5)}, tmp_path, atol=1e-5)


def _captioners():
    common = dict(num_frames=6, image_size=SIZE, hidden_units=16, embedding_dim=8, frame_features=16,
                  cnn_filters=(4, 8), dropout=0.0)
    return {
        "mean_pool": VideoLRCNCaptioner(30, video_encoder="mean_pool", variant="2u",
                                        image_embedding_dim=16, **common),
        "lrcn": VideoLRCNCaptioner(30, video_encoder="lstm", variant="2f", encoder_units=16,
                                   image_embedding_dim=16, **common),
        "s2vt": S2VTCaptioner(30, **common),
        "lrcn_pooled": VideoLRCNCaptioner(30, video_encoder="lstm", variant="2f", encoder_units=16,
                                          image_embedding_dim=16, global_pool=True, **common),
    }


@pytest.mark.parametrize("name", ["mean_pool", "lrcn", "s2vt", "lrcn_pooled"])
def test_video_captioner_steps_reproduce_the_forward_pass_and_decode(name, tmp_path):
    model = _captioners()[name]
    frames = _frames(count=6)
    caption_in = np.array([[1, 5, 6, 7], [1, 8, 9, 4]], "int32")
    full = assert_steps_reproduce_forward(model, frames, caption_in)  # [2, 4, 30]
    # The video matters: other frames, other logits.
    other = model({"visual": _frames(count=6, seed=1), "caption_in": caption_in}).numpy()
    assert np.abs(other - full).max() > 1e-4
    for beam in (1, 3):
        result = decoding.beam_search(model.step, model.initial_state(model.encode_visual(frames)),
                                      30, beam, 5, n_best=beam)
        assert result.ids.shape == (2, beam, 5)
    run_saving_test(model, {"visual": frames, "caption_in": caption_in}, tmp_path)


def test_mean_pool_ignores_frame_order_and_the_lstm_encoder_does_not():
    models = _captioners()
    frames = _frames(count=6)
    reversed_frames = frames[:, ::-1]
    for name, order_matters in (("mean_pool", False), ("lrcn", True), ("s2vt", True)):
        model = models[name]
        a = model.encode_visual(frames)
        b = model.encode_visual(reversed_frames)
        assert (np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-5) == order_matters, name


# --- exports: a fresh process with TensorFlow only ----------------------------------------------
SERVE_SCRIPT = TF_ONLY_PREAMBLE + textwrap.dedent("""
    activity_dir, caption_dir, request_path, out_path = sys.argv[1:]
    request = json.load(open(request_path))
    frames = tf.constant([[base64.b64decode(f) for f in video] for video in request["frames"]])
    flow = tf.constant([[base64.b64decode(f) for f in video] for video in request["flow"]])
    activity = tf.saved_model.load(activity_dir)
    captioner = tf.saved_model.load(caption_dir)
    rgb = activity.signatures["serving_default"](frames=frames)
    fused = activity.signatures["fusion"](frames=frames, flow=flow)
    captions = captioner.signatures["serving_default"](frames=frames)
    json.dump({"label": [l.decode() for l in rgb["label"].numpy()],
               "probabilities": rgb["probabilities"].numpy().tolist(),
               "fusion": fused["probabilities"].numpy().tolist(),
               "captions": [[c.decode() for c in row] for row in captions["captions"].numpy()],
               "scores": captions["scores"].numpy().tolist(),
               "modules": sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)},
              open(out_path, "w"))
""")


@pytest.mark.slow
def test_exports_serve_in_a_fresh_tensorflow_only_process(tmp_path):
    labels = ["growing", "moving left", "shrinking"]
    small = dict(image_size=SIZE, cnn_features=16, cnn_filters=(4, 8), hidden_units=8)
    rgb = LRCNActivityRecognizer(3, stream="frames", **small)
    flow = LRCNActivityRecognizer(3, stream="flow", **small)
    words = ["circle", "moves", "left", "red", "grows"] + [f"w{k}" for k in range(21)]  # V = 4 + 26 = 30
    vocab_path = text.Vocabulary.write(words, str(tmp_path / "run" / "vocab.txt"))
    captioner = _captioners()["s2vt"]
    decode = DecodeConfig(beam_size=3, max_length=6, n_best=2)
    activity_path = export_video.export_activity(rgb, flow, labels, str(tmp_path / "saved"), "activity",
                                                 clip_length=4, clip_stride=2)
    caption_path = export_video.export_video_captioner(captioner, vocab_path, str(tmp_path / "saved"),
                                                       "describe", decode)
    assert activity_path.endswith("activity/1") and caption_path.endswith("describe/1")
    assert os.path.exists(os.path.join(caption_path, "assets.extra", "tf_serving_warmup_requests"))

    # Two videos of 6 frames (frames and flow images as JPEGs at another size than the models').
    videos = [_moving_square(1, 0, count=6), _moving_square(0, -1, count=6)]
    jpeg = lambda image: cv2.imencode(".jpg", image[..., ::-1])[1].tobytes()  # noqa: E731
    frames = [[jpeg(f) for f in video] for video in videos]
    flows = [[jpeg(f) for f in images.optical_flow_images(video)] for video in videos]
    # What the package computes, before the workspace goes.
    decoded = tf.cast(tf.stack([tf.stack([images.preprocess_image(f, SIZE) for f in video])
                                for video in frames]), tf.float32)
    expected = clip_average_probabilities(lambda c: rgb({"frames": c}, training=False), decoded, 4, 2)
    shutil.rmtree(tmp_path / "run")

    encode = lambda videos: [[base64.b64encode(f).decode() for f in v] for v in videos]  # noqa: E731
    (tmp_path / "request.json").write_text(json.dumps({"frames": encode(frames), "flow": encode(flows)}))
    (tmp_path / "serve.py").write_text(SERVE_SCRIPT)
    subprocess.run([sys.executable, str(tmp_path / "serve.py"), activity_path, caption_path,
                    str(tmp_path / "request.json"), str(tmp_path / "out.json")],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=str(tmp_path))
    served = json.loads((tmp_path / "out.json").read_text())
    assert served["modules"] == []
    np.testing.assert_allclose(served["probabilities"], expected.numpy(), atol=1e-4)
    assert served["label"] == [labels[i] for i in expected.numpy().argmax(1)]
    assert np.allclose(np.sum(served["fusion"], axis=1), 1.0, atol=1e-4)
    assert np.array(served["captions"]).shape == (2, 2)
    assert all(set(c.split()) <= set(words) | {"<unk>"} for row in served["captions"] for c in row)
    assert np.all(np.diff(served["scores"], axis=1) <= 1e-6)  # best first
    one_video = np.array(frames[:1], object)  # [1, frames]
    run_batching_test(activity_path, {"serving_default": {"frames": one_video},
                                      "flow": {"flow": np.array(flows[:1], object)},
                                      "fusion": {"frames": one_video, "flow": np.array(flows[:1], object)}})
    run_batching_test(caption_path, {"serving_default": {"frames": one_video}})
