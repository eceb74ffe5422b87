"""LRCN's two teacher-forced paths: the scan over precomputed projections and `keras.layers.LSTM`
in its cuDNN configuration (`recurrent_implementation`), run on the CPU (Keras' own LSTM loop
stands in for the cuDNN kernel; the arithmetic and the weights are the same)."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_all_close, run_steps

from vcaption import decoding, layers, registry
from vcaption.captioning.lrcn import LRCNCaptioner
from vcaption.losses import MaskedCaptionLoss
from vcaption.video.lrcn import VideoLRCNCaptioner

from conftest import FIXTURES as FIXTURE_ROOT  # noqa: E402

FIXTURES = FIXTURE_ROOT / "keras_v1"  # written by older code (tests/test_saved_keras_compat.py)
VOCAB, BATCH, TIME, FEATURES = 13, 4, 6, 7
SIZES = dict(vocab_size=VOCAB, hidden_units=8, embedding_dim=6, image_embedding_dim=5,
             encoder="features", feature_dim=FEATURES, dropout=0.0)


def lrcn(implementation, variant="2f", **overrides):
    return LRCNCaptioner(variant=variant, recurrent_implementation=implementation,
                         **{**SIZES, **overrides})


def padded_batch(seed=0):
    """Right-padded captions of lengths 6, 4, 2 and 1 (pad id 0), as the data pipeline makes them."""
    rng = np.random.default_rng(seed)
    caption_in = rng.integers(4, VOCAB, size=(BATCH, TIME)).astype("int32")
    caption_in[:, 0] = 1  # <start>
    for row, length in enumerate((6, 4, 2, 1)):
        caption_in[row, length:] = 0
    visual = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    return {"visual": visual, "caption_in": caption_in}


@pytest.mark.parametrize("variant", ["1u", "2u", "2f"])
def test_cudnn_path_gives_the_scan_logits_and_gradients_from_the_same_weights(variant, monkeypatch):
    keras.utils.set_random_seed(0)
    scan = lrcn("scan", variant)
    fused = lrcn("cudnn", variant)
    fused.set_weights(scan.get_weights())
    inputs = padded_batch()
    lstm_runs = []
    inner_loop = keras.layers.LSTM.inner_loop

    def counting_inner_loop(self, *args, **kwargs):
        lstm_runs.append(self.units)
        return inner_loop(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.LSTM, "inner_loop", counting_inner_loop)
    targets = np.concatenate([inputs["caption_in"][:, 1:], np.zeros((BATCH, 1), "int32")], axis=1)
    gradients, logits = [], []
    for model in (scan, fused):
        with tf.GradientTape() as tape:
            model_logits = model(inputs, training=True)
            loss = MaskedCaptionLoss()(targets, model_logits)
        logits.append(model_logits)
        gradients.append(tape.gradient(loss, model.trainable_variables))

    assert lstm_runs == [8] * fused.num_layers  # the fused model ran keras.layers.LSTM, once a layer
    assert_all_close(logits[1], logits[0], atol=1e-5, rtol=0)  # padded positions included
    assert [v.path for v in fused.trainable_variables] == [v.path for v in scan.trainable_variables]
    assert all(g is not None for g in gradients[1])  # W_x, W_v, U and b all train through cuDNN
    assert_all_close(gradients[1], gradients[0], atol=1e-5, rtol=1e-4)


def test_video_lrcn_decoder_takes_the_cudnn_path_too():
    kwargs = dict(num_frames=3, video_encoder="lstm", encoder_units=4, frame_features=6,
                  cnn_filters=(4,), image_size=16, variant="2f", hidden_units=8, embedding_dim=6,
                  image_embedding_dim=5, dropout=0.0)
    keras.utils.set_random_seed(0)
    scan = VideoLRCNCaptioner(VOCAB, recurrent_implementation="scan", **kwargs)
    fused = VideoLRCNCaptioner(VOCAB, recurrent_implementation="cudnn", **kwargs)
    fused.set_weights(scan.get_weights())
    rng = np.random.default_rng(1)
    inputs = {"visual": rng.integers(0, 256, (2, 3, 16, 16, 3)).astype("float32"),
              "caption_in": padded_batch()["caption_in"][:2]}
    assert_all_close(fused(inputs), scan(inputs), atol=1e-5, rtol=0)


def test_cudnn_path_under_mixed_bfloat16_keeps_float32_logits_near_the_scan():
    keras.utils.set_random_seed(0)
    scan = lrcn("scan", dtype="mixed_bfloat16")
    fused = lrcn("cudnn", dtype="mixed_bfloat16")
    fused.set_weights(scan.get_weights())
    inputs = padded_batch()
    logits = fused(inputs)
    assert logits.dtype == "float32"
    # Both compute in bfloat16 (8-bit mantissa), in different orders of the same sums.
    assert_all_close(logits, scan(inputs), atol=3e-2, rtol=0)


@pytest.mark.parametrize("trained_on, decoded_on", [("cudnn", "scan"), ("scan", "cudnn")])
def test_checkpoint_trained_on_one_path_drives_the_other_paths_step_function(trained_on, decoded_on,
                                                                             tmp_path):
    keras.utils.set_random_seed(0)
    trained = lrcn(trained_on)
    initial = [np.array(w) for w in trained.get_weights()]
    inputs = padded_batch()
    targets = np.concatenate([inputs["caption_in"][:, 1:], np.zeros((BATCH, 1), "int32")], axis=1)
    trained.compile(optimizer=keras.optimizers.Adam(0.05), loss=MaskedCaptionLoss())
    trained.fit(inputs, targets, batch_size=BATCH, epochs=3, verbose=0)  # compiled train steps
    assert any(not np.allclose(a, b) for a, b in zip(initial, trained.get_weights()))
    path = str(tmp_path / "best.weights.h5")  # the trainer's checkpoint format
    trained.save_weights(path)

    other = lrcn(decoded_on)
    other.load_weights(path)
    expected = trained(inputs)
    # The other path's teacher-forced logits, and its step function fed the same captions.
    assert_all_close(other(inputs), expected, atol=1e-5, rtol=0)
    assert_all_close(run_steps(other, inputs)[0], expected, atol=1e-5, rtol=0)

    @tf.function
    def greedy(model, visual):
        return decoding.greedy(model.step, model.initial_state(model.encode_visual(visual)), TIME)

    # In-graph greedy decoding of the trained weights on the other path: same captions, same scores.
    decoded, reference = greedy(other, inputs["visual"]), greedy(trained, inputs["visual"])
    np.testing.assert_array_equal(decoded.ids.numpy(), reference.ids.numpy())
    assert_all_close(decoded.scores, reference.scores, atol=1e-5, rtol=0)


def test_keras_file_written_before_the_cudnn_path_loads_into_it(tmp_path):
    # tests/fixtures/keras_v1/lrcn_2f.keras (older code, small_cnn encoder): its weights file
    # loads straight into a cudnn-path model and gives the outputs recorded with it.
    saved = registry.load_model(str(FIXTURES / "lrcn_2f.keras"))
    fused = LRCNCaptioner.from_config({**saved.get_config(), "recurrent_implementation": "cudnn"})
    with zipfile.ZipFile(FIXTURES / "lrcn_2f.keras") as archive:
        archive.extract("model.weights.h5", tmp_path)
    fused.load_weights(str(tmp_path / "model.weights.h5"))
    recorded = np.load(FIXTURES / "lrcn_2f.npz")
    inputs = {k[3:]: recorded[k] for k in recorded.files if k.startswith("in_")}
    assert_all_close(fused(inputs, training=False), recorded["out_0"], atol=1e-5, rtol=1e-4)


def test_auto_is_cudnn_only_for_lstms_with_a_visible_gpu(monkeypatch):
    resolve = layers.resolve_recurrent_implementation
    monkeypatch.setattr(layers, "gpu_visible", lambda: True)
    assert (resolve("auto", "lstm"), resolve("auto", "rnn")) == ("cudnn", "scan")
    assert resolve("scan", "lstm") == "scan"
    monkeypatch.setattr(layers, "gpu_visible", lambda: False)
    assert (resolve("auto", "lstm"), resolve("cudnn", "lstm")) == ("scan", "cudnn")
    with pytest.raises(ValueError, match="cell='lstm'"):
        resolve("cudnn", "rnn")
    with pytest.raises(ValueError, match="recurrent_implementation must be one of"):
        lrcn("cuda")


def test_auto_is_resolved_on_the_machine_that_builds_the_model_and_saved_as_auto():
    model = lrcn("auto")
    assert model.active_recurrent_implementation == ("cudnn" if layers.gpu_visible() else "scan")
    revived = LRCNCaptioner.from_config(model.get_config())
    assert revived.get_config()["recurrent_implementation"] == "auto"


def test_cudnn_path_model_refuses_xla():
    model = lrcn("cudnn")
    with pytest.warns(UserWarning, match="jit_compile"):
        model.compile(optimizer="adam", loss=MaskedCaptionLoss(), jit_compile=True)
    assert model.jit_compile is False
