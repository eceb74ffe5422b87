"""LRCN §6 through a semantic tuple: the slot layers, the tuple predictor's loss, the decoders (a),
(b), (c) and oracle (step API = full forward, save/load, a frozen predictor), what (b) and (c) read,
the tuples read from the world's files, and the hermetic export in a TensorFlow-only process."""

from __future__ import annotations

import base64
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

from helpers import TF_ONLY_PREAMBLE, assert_steps_reproduce_forward, run_saving_test
from vcaption import decoding, images, text
from vcaption.config import DecodeConfig
from vcaption.video import export as export_video
from vcaption.video import tuple_systems
from vcaption.video.semantic_tuple import (TUPLE_INPUTS, SemanticTupleCaptioner, SlotCrossEntropy,
                                           SlotSoftmax, TupleInput, TuplePredictor)

SLOTS = (3, 2, 4)  # K_s of three slots: ΣK = 9
SIZE, FRAMES, VOCAB = 16, 4, 30
SMALL = dict(hidden_units=8, cnn_features=8, cnn_filters=(4, 8))
DECODER = dict(hidden_units=16, embedding_dim=8, image_embedding_dim=8, encoder_units=8,
               tuple_embedding_dim=4, dropout=0.0)
CAPTION_IN = np.array([[1, 5, 6, 7], [1, 8, 9, 4]], "int32")


def _frames(batch=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, FRAMES, SIZE, SIZE, 3)).astype("float32")


def _predictor(seed=0):
    tf.random.set_seed(seed)
    return TuplePredictor(SLOTS, num_frames=FRAMES, image_size=SIZE, **SMALL)


def _captioner(tuple_input, predictor=None):
    predictor = predictor or _predictor()
    model = SemanticTupleCaptioner(VOCAB, SLOTS, tuple_input, num_frames=FRAMES, image_size=SIZE,
                                   predictor=predictor.architecture(), **DECODER)
    if tuple_input != "oracle":
        model.load_predictor(predictor)
    return model


def _make_certain(predictor, values):
    """Sets the predictor's slot logits to +-50 whatever the clip: slot s is `values[s]` with
    probability 1 - e^-100, so its slot distributions are one-hot to float32 precision."""
    layer = predictor.slot_logits
    bias = np.full(sum(SLOTS), -50.0, np.float32)
    for start, value in zip(np.cumsum((0,) + SLOTS[:-1]), values):
        bias[start + value] = 50.0
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    layer.bias.assign(bias)


def test_slot_layers_softmax_within_each_slot_and_pick_its_argmax():
    logits = np.array([[0.0, 2.0, 1.0, 3.0, -1.0, 0.0, 0.0, 5.0, 1.0]], np.float32)
    probabilities = SlotSoftmax(SLOTS)(logits).numpy()
    np.testing.assert_allclose([probabilities[0, :3].sum(), probabilities[0, 3:5].sum(),
                                probabilities[0, 5:].sum()], 1.0, atol=1e-6)
    np.testing.assert_allclose(probabilities[0, 3:5], tf.nn.softmax([3.0, -1.0]).numpy(), atol=1e-6)
    one_hot = TupleInput(SLOTS, "argmax")(probabilities).numpy()
    np.testing.assert_array_equal(one_hot, [[0, 1, 0, 1, 0, 0, 0, 1, 0]])
    # Words: each slot's argmax among all slots' values (slot 2 starts at 5).
    np.testing.assert_array_equal(TupleInput(SLOTS, "words")(probabilities).numpy(), [[1, 3, 7]])
    np.testing.assert_array_equal(TupleInput(SLOTS, "probabilities")(probabilities).numpy(), probabilities)
    with pytest.raises(ValueError, match="mode"):
        TupleInput(SLOTS, "oracle")


def test_argmax_and_probabilities_are_the_same_input_when_the_distributions_are_one_hot():
    one_hot = np.array([[0, 0, 1, 1, 0, 0, 1, 0, 0], [1, 0, 0, 0, 1, 0, 0, 0, 1]], np.float32)
    np.testing.assert_array_equal(TupleInput(SLOTS, "argmax")(one_hot).numpy(),
                                  TupleInput(SLOTS, "probabilities")(one_hot).numpy())
    soft = np.array([[0.2, 0.1, 0.7, 0.6, 0.4, 0.1, 0.5, 0.2, 0.2]], np.float32)
    assert not np.array_equal(TupleInput(SLOTS, "argmax")(soft).numpy(),
                              TupleInput(SLOTS, "probabilities")(soft).numpy())


def test_decoders_b_and_c_receive_identical_inputs_from_a_certain_predictor():
    """(b) and (c) with the same weights: a predictor sure of every slot gives them the same
    decoder input and the same logits; an unsure one does not."""
    predictor = _predictor()
    b, c = _captioner("argmax", predictor), _captioner("probabilities", predictor)
    c.set_weights(b.get_weights())
    frames = _frames()
    unsure_b, unsure_c = b.encode_visual(frames).numpy(), c.encode_visual(frames).numpy()
    assert np.abs(unsure_b - unsure_c).max() > 1e-3
    _make_certain(predictor, (2, 0, 1))
    b.load_predictor(predictor)
    c.load_predictor(predictor)
    np.testing.assert_array_equal(b.encoder(frames).numpy(), c.encoder(frames).numpy())
    np.testing.assert_array_equal(b.encoder(frames).numpy()[0], [0, 0, 1, 1, 0, 0, 1, 0, 0])
    np.testing.assert_allclose(b({"visual": frames, "caption_in": CAPTION_IN}).numpy(),
                               c({"visual": frames, "caption_in": CAPTION_IN}).numpy(), atol=1e-6)


def test_slot_cross_entropy_is_the_sum_of_each_slots():
    logits = np.random.default_rng(1).normal(size=(2, sum(SLOTS))).astype(np.float32)
    targets = np.array([[2, 1, 0], [0, 0, 3]])
    loss = SlotCrossEntropy(SLOTS)(targets, logits).numpy()
    by_hand = []
    for row, target in zip(logits, targets):
        total, start = 0.0, 0
        for size, value in zip(SLOTS, target):
            slot = row[start:start + size]
            total += np.log(np.exp(slot).sum()) - slot[value]
            start += size
        by_hand.append(total)
    np.testing.assert_allclose(loss, np.mean(by_hand), rtol=1e-5)


@pytest.mark.parametrize("tuple_input", TUPLE_INPUTS)
def test_tuple_decoders_step_as_their_forward_pass_and_save(tuple_input, tmp_path):
    model = _captioner(tuple_input)
    visual = (np.eye(sum(SLOTS), dtype=np.float32)[[0, 4]] if tuple_input == "oracle" else _frames())
    assert_steps_reproduce_forward(model, visual, CAPTION_IN)
    result = decoding.beam_search(model.step, model.initial_state(model.encode_visual(visual)), VOCAB, 3, 5,
                                  n_best=2)
    assert result.ids.shape == (2, 2, 5)
    run_saving_test(model, {"visual": visual, "caption_in": CAPTION_IN}, tmp_path, atol=1e-5)


def test_the_predictor_inside_a_decoder_is_frozen_and_runs_in_inference_mode():
    predictor = _predictor()
    model = _captioner("probabilities", predictor)
    assert not any("tuple_predictor" in w.path for w in model.trainable_weights)
    frames = _frames()
    expected = SlotSoftmax(SLOTS)(predictor({"frames": frames}, training=False)).numpy()
    # Even in a training pass (batch statistics, dropout) the copy gives the trained predictor's output.
    np.testing.assert_allclose(model.encoder(frames, training=True).numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="oracle"):
        _captioner("oracle").load_predictor(predictor)


def test_tuples_are_read_from_the_msrvtt_file_and_a_missing_one_is_named(tmp_path):
    path = tmp_path / "videodatainfo.json"
    videos = [{"video_id": "video0", "tuple": {"colour": "blue", "shape": "square", "verb": "stops",
                                               "place": "left"}}]
    path.write_text(json.dumps({"videos": videos}))
    indices = tuple_systems.read_tuples(str(path))
    assert indices == {"video0": [2, 1, 1, 0]}
    one_hot = tuple_systems.one_hot_tuples(np.array(list(indices.values())))
    assert one_hot.shape == (1, sum(tuple_systems.SLOT_SIZES)) and one_hot.sum() == 4
    path.write_text(json.dumps({"videos": videos + [{"video_id": "video1"}]}))
    with pytest.raises(ValueError, match="video1"):
        tuple_systems.read_tuples(str(path))
    videos[0]["tuple"]["verb"] = "flies"
    path.write_text(json.dumps({"videos": videos}))
    with pytest.raises(ValueError, match="verb='flies'"):
        tuple_systems.read_tuples(str(path))


SERVE_SCRIPT = TF_ONLY_PREAMBLE + textwrap.dedent("""
    request = json.load(open(sys.argv[-2]))
    frames = tf.constant([[base64.b64decode(f) for f in video] for video in request["frames"]])
    out = {}
    for path in sys.argv[1:-2]:
        captions = tf.saved_model.load(path).signatures["serving_default"](frames=frames)
        out[path] = {"captions": [[c.decode() for c in row] for row in captions["captions"].numpy()],
                     "scores": captions["scores"].numpy().tolist()}
    out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in _BLOCKED)
    json.dump(out, open(sys.argv[-1], "w"))
""")


@pytest.mark.slow
def test_tuple_decoders_export_and_serve_in_a_tensorflow_only_process(tmp_path):
    words = [f"w{k}" for k in range(VOCAB - 4)]
    vocab_path = text.Vocabulary.write(words, str(tmp_path / "run" / "vocab.txt"))
    vocab = text.Vocabulary(vocab_path)
    decode = DecodeConfig(beam_size=3, max_length=6, n_best=2)
    videos = [[np.full((20, 20, 3), 40 * (t + k), np.uint8) for t in range(FRAMES)] for k in range(2)]
    frames = [[cv2.imencode(".jpg", f)[1].tobytes() for f in video] for video in videos]
    decoded = tf.cast(tf.stack([tf.stack([images.preprocess_image(f, SIZE) for f in video])
                                for video in frames]), tf.float32)
    paths, expected = [], {}
    for tuple_input in ("words", "argmax", "probabilities"):
        model = _captioner(tuple_input)
        path = export_video.export_video_captioner(model, vocab_path, str(tmp_path / "saved"), tuple_input,
                                                   decode)
        # What the package decodes from the same frames, before the workspace goes.
        result = decoding.beam_search(model.step, model.initial_state(model.encode_visual(decoded)), VOCAB,
                                      3, 6, n_best=2)
        expected[path] = [[c.decode() for c in vocab.decode(row).numpy()] for row in result.ids]
        paths.append(path)
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "request.json").write_text(json.dumps(
        {"frames": [[base64.b64encode(f).decode() for f in video] for video in frames]}))
    (tmp_path / "serve.py").write_text(SERVE_SCRIPT)
    subprocess.run([sys.executable, str(tmp_path / "serve.py"), *paths, str(tmp_path / "request.json"),
                    str(tmp_path / "out.json")], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=str(tmp_path))
    served = json.loads((tmp_path / "out.json").read_text())
    assert served["modules"] == []
    for path in paths:
        assert served[path]["captions"] == expected[path]
