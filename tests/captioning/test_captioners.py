"""Captioners: LRCN (1u/2u/2f × lstm/rnn), Karpathy's multimodal RNN, Mao's m-RNN, and the loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_all_close, run_saving_test, run_serialization_test, run_steps

from vcaption.layers import S_TANH_SCALE, log_frequency_bias, scaled_tanh
from vcaption.losses import MaskedCaptionLoss, MaskedPerplexity, masked_caption_loss, perplexity
from vcaption.captioning.lrcn import LRCNCaptioner
from vcaption.captioning.mrnn import KarpathyMultimodalRNN, MaoMultimodalRNN

VOCAB, HIDDEN, TIME, BATCH, FEATURES = 20, 8, 5, 3, 6
TINY = dict(feature_dim=FEATURES, dropout=0.25)

# Every model / variant / cell, at tiny sizes on precomputed features.
CONFIGS = {
    **{f"lrcn_{variant}_{cell}": (LRCNCaptioner, dict(
        variant=variant, cell=cell, hidden_units=HIDDEN, embedding_dim=7, image_embedding_dim=5,
        **TINY)) for variant in ("1u", "2u", "2f") for cell in ("lstm", "rnn")},
    # The teacher-forced pass through keras.layers.LSTM (cuDNN on a GPU; Keras' loop here).
    "lrcn_2f_cudnn": (LRCNCaptioner, dict(variant="2f", hidden_units=HIDDEN, embedding_dim=7,
                                          image_embedding_dim=5, recurrent_implementation="cudnn",
                                          **TINY)),
    # Late fusion (NOC): image-only word scores added to the LSTM's at every step.
    "lrcn_2f_visual_words": (LRCNCaptioner, dict(variant="2f", hidden_units=HIDDEN, embedding_dim=7,
                                                 image_embedding_dim=5, visual_word_scores=True,
                                                 **TINY)),
    "karpathy_relu": (KarpathyMultimodalRNN, dict(hidden_units=HIDDEN, embedding_dim=7, **TINY)),
    "karpathy_lstm": (KarpathyMultimodalRNN, dict(hidden_units=HIDDEN, cell="lstm", **TINY)),
    "mao": (MaoMultimodalRNN, dict(embedding_dims=(7, HIDDEN), multimodal_units=9, **TINY)),
}
IMAGE_CONFIGS = {
    "lrcn_2f_small_cnn": (LRCNCaptioner, dict(hidden_units=HIDDEN, embedding_dim=7,
                                              image_embedding_dim=5, encoder="small_cnn",
                                              image_size=16, feature_dim=6)),
    "karpathy_small_cnn": (KarpathyMultimodalRNN, dict(hidden_units=HIDDEN, encoder="small_cnn",
                                                       image_size=16, feature_dim=6)),
    "mao_small_cnn": (MaoMultimodalRNN, dict(embedding_dims=(7, HIDDEN), multimodal_units=9,
                                             encoder="small_cnn", image_size=16, feature_dim=6)),
}
ALL_CONFIGS = {**CONFIGS, **IMAGE_CONFIGS}


def build(key):
    cls, kwargs = ALL_CONFIGS[key]
    return cls(vocab_size=VOCAB, **kwargs)


def make_inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(model.input["visual"].shape[1:])
    if len(shape) == 3:
        visual = rng.integers(0, 256, size=(BATCH,) + shape).astype("float32")  # pixels 0..255
    else:
        visual = rng.normal(size=(BATCH,) + shape).astype("float32")
    caption_in = rng.integers(3, VOCAB, size=(BATCH, TIME)).astype("int32")
    caption_in[:, 0] = 1  # <start>
    caption_in[0, 3:] = 0  # a short, padded caption
    return {"visual": visual, "caption_in": caption_in}


@pytest.mark.parametrize("key", sorted(ALL_CONFIGS))
def test_forward_shapes_and_step_equivalence(key):
    model = build(key)
    inputs = make_inputs(model)
    logits = model(inputs, training=False)
    assert tuple(logits.shape) == (BATCH, TIME, VOCAB)
    assert logits.dtype == "float32"
    step_logits, state = run_steps(model, inputs)
    # Teacher-forced steps reproduce the full forward pass: in-graph decoding is exact.
    np.testing.assert_allclose(step_logits, keras.ops.convert_to_numpy(logits), atol=1e-5)
    for value in state.values():
        assert value.shape[0] == BATCH


@pytest.mark.parametrize("key", ["lrcn_2f_lstm", "karpathy_relu", "mao"])
def test_step_runs_in_tf_while_loop(key):
    model = build(key)
    inputs = make_inputs(model)

    @tf.function
    def greedy(visual):
        state = model.initial_state(model.encode_visual(visual))
        tokens = tf.fill([BATCH], 1)  # <start>

        def body(t, tokens, state, out):
            logits, state = model.step(tokens, state)
            tokens = tf.argmax(logits, axis=-1, output_type=tf.int32)
            return t + 1, tokens, state, out.write(t, tokens)

        out = tf.TensorArray(tf.int32, size=TIME)
        _, _, _, out = tf.while_loop(lambda t, *_: t < TIME, body, (0, tokens, state, out))
        return tf.transpose(out.stack())  # [batch, time]

    decoded = greedy(tf.constant(inputs["visual"]))
    assert tuple(decoded.shape) == (BATCH, TIME)


@pytest.mark.parametrize("key", ["lrcn_1u_lstm", "lrcn_2f_rnn", "lrcn_2f_cudnn", "lrcn_2f_visual_words", "karpathy_lstm",
                                 "mao", "lrcn_2f_small_cnn"])
def test_serialization_round_trip(key):
    revived = run_serialization_test(build(key))
    assert revived.count_params() == build(key).count_params()


@pytest.mark.parametrize("key", ["lrcn_2f_lstm", "lrcn_2f_cudnn", "lrcn_2f_visual_words", "karpathy_relu", "mao",
                                 "lrcn_2f_small_cnn"])
def test_saving_gives_identical_outputs(key, tmp_path):
    model = build(key)
    inputs = make_inputs(model)
    restored = run_saving_test(model, inputs, tmp_path)
    # The restored model decodes identically too.
    np.testing.assert_allclose(run_steps(restored, inputs)[0], run_steps(model, inputs)[0],
                               atol=1e-6)


def test_uint8_images_are_accepted():
    model = build("lrcn_2f_small_cnn")
    inputs = make_inputs(model)
    as_uint8 = dict(inputs, visual=inputs["visual"].astype("uint8"))
    assert_all_close(model(as_uint8, training=False), model(inputs, training=False), atol=1e-5)


def test_mixed_precision_policy_keeps_float32_logits():
    cls, kwargs = CONFIGS["lrcn_2f_lstm"]
    model = cls(vocab_size=VOCAB, dtype="mixed_bfloat16", **kwargs)
    assert model.get_layer("recurrence_1").compute_dtype == "bfloat16"
    inputs = make_inputs(model)
    logits = model(inputs, training=False)
    assert logits.dtype == "float32"
    step_logits, state = run_steps(model, inputs)
    assert step_logits.dtype == np.float32
    np.testing.assert_allclose(step_logits, keras.ops.convert_to_numpy(logits), atol=0.1)
    assert run_serialization_test(model).get_config()["dtype"] == model.get_config()["dtype"]


@pytest.mark.parametrize("key", ["lrcn_2u_lstm", "lrcn_2f_cudnn"])
def test_dropout_only_in_training(key):
    model = build(key)
    inputs = make_inputs(model)
    a = model(inputs, training=False)
    assert_all_close(model(inputs, training=False), a)
    assert not np.allclose(keras.ops.convert_to_numpy(model(inputs, training=True)),
                           keras.ops.convert_to_numpy(a))


# --- LRCN ------------------------------------------------------------------------------------

def _layer_output(model, name, inputs):
    probe = keras.Model(model.input, model.get_layer(name).output)
    return keras.ops.convert_to_numpy(probe(inputs, training=False))


@pytest.mark.parametrize("variant", ["2f", "2u"])
def test_lrcn_factored_first_layer_ignores_image(variant):
    model = build(f"lrcn_{variant}_lstm")
    inputs = make_inputs(model)
    other = dict(inputs, visual=inputs["visual"] + 1.0)
    h1, h1_other = (_layer_output(model, "recurrence_1", x) for x in (inputs, other))
    logits, logits_other = (keras.ops.convert_to_numpy(model(x, training=False))
                            for x in (inputs, other))
    assert not np.allclose(logits, logits_other)  # the image matters ...
    if variant == "2f":  # ... but layer 1 of the factored model only sees the partial caption
        np.testing.assert_allclose(h1, h1_other, atol=1e-7)
        state = model.initial_state(model.encode_visual(inputs["visual"]))
        state_other = model.initial_state(model.encode_visual(other["visual"]))
        for t in range(TIME):
            _, state = model.step(inputs["caption_in"][:, t], state)
            _, state_other = model.step(inputs["caption_in"][:, t], state_other)
            for key in ("h1", "c1"):
                assert_all_close(state[key], state_other[key], atol=1e-7)
    else:
        assert not np.allclose(h1, h1_other)


def test_lrcn_layer_count_and_config():
    assert len(build("lrcn_1u_lstm").recurrences) == 1
    model = build("lrcn_2f_rnn")
    assert len(model.recurrences) == 2
    assert set(model.initial_state(model.encode_visual(np.zeros((2, FEATURES), "float32")))) == {
        "h1", "h2", "image_projection"}
    assert model.get_config()["variant"] == "2f"
    with pytest.raises(ValueError):
        LRCNCaptioner(VOCAB, variant="3x", feature_dim=FEATURES)


# --- Karpathy & Fei-Fei ---------------------------------------------------------------------

@pytest.mark.parametrize("key", ["karpathy_relu", "karpathy_lstm"])
def test_karpathy_image_bias_reaches_first_step_only(key):
    model = build(key)
    inputs = make_inputs(model)
    other = dict(inputs, visual=inputs["visual"] * -2.0 + 1.0)
    # Non-recurrent pre-activations W_hx·x_t + b_h + 1(t=1)⊙b_v (Eq. 14): only t=1 changes.
    pre, pre_other = (_layer_output(model, "first_step_bias", x) for x in (inputs, other))
    assert not np.allclose(pre[:, 0], pre_other[:, 0])
    np.testing.assert_array_equal(pre[:, 1:], pre_other[:, 1:])

    # Step path: after t=1 the pending bias is gone; with h_1 held fixed, later steps do not
    # depend on the image.
    state = model.initial_state(model.encode_visual(inputs["visual"]))
    state_other = model.initial_state(model.encode_visual(other["visual"]))
    first, state = model.step(inputs["caption_in"][:, 0], state)
    first_other, state_other = model.step(inputs["caption_in"][:, 0], state_other)
    assert not np.allclose(keras.ops.convert_to_numpy(first), keras.ops.convert_to_numpy(first_other))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(state_other["image_bias"]), 0.0)
    injected = dict(state_other, **{k: state[k] for k in model.recurrence.state_keys})
    for t in range(1, TIME):
        logits, state = model.step(inputs["caption_in"][:, t], state)
        logits_other, injected = model.step(inputs["caption_in"][:, t], injected)
        assert_all_close(logits_other, logits, atol=0)


def test_output_bias_is_log_word_frequency():
    counts = np.arange(VOCAB, dtype="float64")
    counts[:3] = 0  # <pad>, <start>, <end> never seen as targets here
    counts[2] = 7
    expected = np.log(np.maximum(counts / counts.sum(), 1e-6))
    np.testing.assert_allclose(log_frequency_bias(counts), expected, rtol=1e-6)
    assert np.isfinite(log_frequency_bias(counts)).all()
    for key in ("karpathy_relu", "lrcn_1u_lstm", "mao"):
        model = build(key)
        config = model.get_config()
        model.initialize_output_bias(counts)
        bias = keras.ops.convert_to_numpy(model.get_layer("logits").bias)
        np.testing.assert_allclose(bias, expected, rtol=1e-6)
        nonzero = counts > 0
        np.testing.assert_allclose(bias[nonzero], np.log(counts[nonzero] / counts.sum()), rtol=1e-6)
        assert model.get_config() == config  # an initialisation, not configuration
    with pytest.raises(ValueError):
        build("mao").initialize_output_bias(np.ones(VOCAB + 1))


# --- Mao et al. -----------------------------------------------------------------------------

def test_scaled_tanh_values():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0], dtype="float32")
    y = keras.ops.convert_to_numpy(scaled_tanh(x))
    assert y[2] == 0.0
    np.testing.assert_allclose(y[3], 1.7159 * np.tanh(2.0 / 3.0), rtol=1e-6)
    np.testing.assert_allclose(y, -y[::-1], rtol=1e-6)  # odd symmetry
    assert S_TANH_SCALE == 1.7159
    np.testing.assert_allclose(np.abs(y).max(), 1.7159 * np.tanh(2.0), rtol=1e-6)


def test_mao_recurrent_and_multimodal_sizes():
    model = MaoMultimodalRNN(VOCAB, feature_dim=FEATURES)  # the paper's sizes
    assert model.get_layer("embedding_1").output_dim == 128
    assert model.get_layer("recurrence").units == 256
    assert model.get_layer("multimodal_word").units == 512
    assert tuple(model.get_layer("recurrence").recurrent_kernel.shape) == (256, 256)  # U_r


# --- loss -----------------------------------------------------------------------------------

def _loss_inputs(seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(3, VOCAB, size=(BATCH, TIME)).astype("int32")
    targets[0, 2:] = 0
    targets[1, 4:] = 0
    logits = rng.normal(size=(BATCH, TIME, VOCAB)).astype("float32")
    return targets, logits


def test_padded_steps_carry_no_loss_or_gradient():
    targets, logits = _loss_inputs()
    changed = logits.copy()
    changed[targets == 0] = 100.0 * np.random.default_rng(1).normal(size=(VOCAB,))

    def loss_and_grad(x):
        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            loss = masked_caption_loss(targets, x)
        return loss.numpy(), tape.gradient(loss, x).numpy()

    loss, grad = loss_and_grad(logits)
    loss_changed, grad_changed = loss_and_grad(changed)
    np.testing.assert_allclose(loss_changed, loss, rtol=1e-6)
    np.testing.assert_allclose(grad_changed[targets != 0], grad[targets != 0], atol=1e-7)
    np.testing.assert_array_equal(grad[targets == 0], 0.0)

    # The mean is over occupied tokens.
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    token_nll = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    expected = token_nll[targets != 0].mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(perplexity(targets, logits), np.exp(expected), rtol=1e-5)
    metric = MaskedPerplexity()
    metric.update_state(targets, logits)
    np.testing.assert_allclose(metric.result(), np.exp(expected), rtol=1e-5)
    np.testing.assert_allclose(MaskedCaptionLoss()(targets, logits), expected, rtol=1e-5)


def test_compile_and_fit_with_masked_loss():
    model = build("karpathy_relu")
    inputs = make_inputs(model)
    targets = np.concatenate([inputs["caption_in"][:, 1:], np.full((BATCH, 1), 2, "int32")], 1)
    targets[inputs["caption_in"] == 0] = 0
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=MaskedCaptionLoss(),
                  metrics=[MaskedPerplexity()])
    history = model.fit(inputs, targets, epochs=5, batch_size=BATCH, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# --- shared recurrence ----------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_recurrence_step_matches_scan_and_compiles_with_xla(cell):
    from vcaption.layers import Recurrence

    recurrence = Recurrence(HIDDEN, cell=cell, activation="relu")
    x = np.random.default_rng(0).normal(size=(BATCH, TIME, recurrence.projection_units))
    x = x.astype("float32")
    hidden = keras.ops.convert_to_numpy(recurrence(x))  # [batch, time, units]
    state = recurrence.get_initial_state(BATCH)
    for t in range(TIME):
        h, state = recurrence.step(x[:, t], state)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(h), hidden[:, t], atol=1e-6)

    @tf.function(jit_compile=True)
    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(recurrence(x) ** 2)
        return loss, tape.gradient(loss, recurrence.trainable_variables)

    loss, grads = loss_and_grads(tf.constant(x))
    np.testing.assert_allclose(loss.numpy(), (hidden ** 2).sum(), rtol=1e-4)
    assert all(g is not None for g in grads)


def test_mixed_float16_compiles_with_loss_scaling():
    cls, kwargs = CONFIGS["mao"]
    model = cls(vocab_size=VOCAB, dtype="mixed_float16", **kwargs)
    model.compile(optimizer="sgd", loss=MaskedCaptionLoss())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    inputs = make_inputs(model)
    assert model(inputs, training=False).dtype == "float32"


def test_from_config_does_not_fetch_pretrained_weights_again():
    """A saved model's config says encoder_weights="imagenet"; loading must not download them (the
    trained weights are in the file), which offline would fail."""
    from vcaption.captioning.lrcn import LRCNCaptioner

    model = LRCNCaptioner(vocab_size=9, hidden_units=4, embedding_dim=4, image_embedding_dim=4,
                          encoder="mobilenetv3small", image_size=32)
    config = {**model.get_config(), "encoder_weights": "imagenet"}
    restored = LRCNCaptioner.from_config(config)
    assert restored.encoder_weights == "imagenet"
    assert restored.get_config()["encoder_weights"] == "imagenet"


@pytest.mark.parametrize("key", sorted(ALL_CONFIGS))
def test_grouped_batch_equals_each_caption_with_its_own_image_copy(key):
    # Each image once, followed by its K captions (image-major), must give the logits and the
    # gradients of the batch in which every caption carries its own copy of the image.
    model, k = build(key), 2
    inputs = make_inputs(model)
    rng = np.random.default_rng(1)
    captions = rng.integers(3, VOCAB, size=(BATCH * k, TIME)).astype("int32")
    grouped = {"visual": inputs["visual"], "caption_in": captions}
    ungrouped = {"visual": np.repeat(inputs["visual"], k, axis=0), "caption_in": captions}

    def loss_and_grads(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(batch, training=False) ** 2)
        return loss, tape.gradient(loss, model.trainable_variables)

    (loss_g, grads_g), (loss_u, grads_u) = loss_and_grads(grouped), loss_and_grads(ungrouped)
    assert_all_close(loss_g, loss_u)
    for g, u in zip(grads_g, grads_u):
        assert_all_close(g, u, rtol=1e-4, atol=1e-5)


def test_visual_word_scores_add_the_same_image_only_term_at_every_step():
    """Late fusion: logits with the option minus logits of the same weights without it are the
    image's word scores, equal at every time step and independent of the words."""
    fused = build("lrcn_2f_visual_words")
    inputs = make_inputs(fused)
    plain = LRCNCaptioner(vocab_size=VOCAB, **{**CONFIGS["lrcn_2f_visual_words"][1],
                                               "visual_word_scores": False})
    plain(inputs)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(fused.get_layer(layer.name).get_weights())
    difference = np.asarray(fused(inputs)) - np.asarray(plain(inputs))  # [batch, time, V]
    scores = np.asarray(fused.visual_word_scores(fused.image_embedding(inputs["visual"])))
    assert_all_close(difference, np.repeat(scores[:, None, :], TIME, axis=1), atol=1e-5)
    assert np.abs(scores).max() > 1e-3
