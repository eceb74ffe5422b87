"""Visual encoders: every backbone builds (weights=None) and maps 0..255 images to [B, F]."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vcaption import encoders

BATCH = 2


def _images(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (BATCH, size, size, 3)).astype("float32")


def _check_vector_encoder(name, size, trainable=True):
    encoder = encoders.build_encoder(name, size, weights=None, trainable=trainable)
    features = keras.ops.convert_to_numpy(encoder(_images(size), training=False))
    assert features.shape == (BATCH, encoders.encoder_output_dim(name))
    assert np.isfinite(features).all()
    return encoder


def test_features_encoder_is_identity():
    encoder = encoders.build_encoder("features", feature_dim=6)
    x = np.random.default_rng(0).normal(size=(BATCH, 6)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(encoder(x)), x)
    assert encoders.encoder_output_dim("features", 6) == 6
    with pytest.raises(ValueError):
        encoders.build_encoder("features")


def test_small_cnn_vector_and_spatial():
    encoder = encoders.build_encoder("small_cnn", 16, feature_dim=12)
    features = encoder(_images(16))
    assert tuple(features.shape) == (BATCH, 12)
    assert encoder.trainable_weights
    spatial = encoders.build_encoder("small_cnn", 16, feature_dim=12, spatial=True)
    # Four blocks, the last one unpooled: an S/8 grid of the last block's 64 channels.
    assert tuple(spatial(_images(16)).shape) == (BATCH, 2, 2, 64)
    # Pixels go in as 0..255: the network rescales them itself.
    assert encoder.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_small_cnn_defaults_to_64px():
    encoder = encoders.build_encoder("small_cnn")
    assert tuple(encoder.input_shape) == (None, 64, 64, 3)
    assert encoder.output_shape == (None, encoders.SMALL_CNN_DEFAULT_DIM)


def test_small_cnn_dense_fan_in_does_not_grow_with_the_image():
    # At 64 px the last block ends on a 4x4 grid; larger images are pooled to it (or just
    # under), so the features layer keeps its fan-in: at 128 px a 4x wider one saturated
    # LRCN-2f's gates within 20 steps (encoders.build_small_cnn).
    fan_in = {size: encoders.build_small_cnn(size).get_layer("features").kernel.shape[0]
              for size in (64, 96, 128, 224)}
    assert fan_in[64] == fan_in[128] == fan_in[224] == 4 * 4 * 64
    assert fan_in[96] == 3 * 3 * 64  # a 6x6 grid pooled by 2
    with pytest.raises(ValueError):
        encoders.build_small_cnn(64).get_layer("grid_pool")  # unchanged where the grid is 4x4


def test_frozen_encoder_has_no_trainable_weights():
    encoder = encoders.build_encoder("small_cnn", 16, trainable=False)
    assert not encoder.trainable_weights
    assert encoder.non_trainable_weights


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        encoders.build_encoder("alexnet", 224)
    with pytest.raises(ValueError):
        encoders.build_encoder("resnet50", 16)
    with pytest.raises(ValueError):
        encoders.build_encoder("resnet50", 32, feature_dim=10)


@pytest.mark.parametrize("name", ["mobilenetv3small", "efficientnetb0"])
def test_light_backbones(name):
    _check_vector_encoder(name, 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenetv3large"])
def test_heavy_backbones(name):
    encoder = _check_vector_encoder(name, 32, trainable=False)
    assert not encoder.trainable_weights  # LRCN Table 6 "FT?" = no


def test_backbone_preprocessing_is_the_applications_own():
    images = _images(8)
    layer = encoders.BackbonePreprocessing("vgg16")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)),
                               keras.applications.vgg16.preprocess_input(images.copy()), rtol=1e-6)
    assert layer.get_config()["backbone"] == "vgg16"


@pytest.mark.slow
def test_backbone_spatial_map():
    encoder = encoders.build_encoder("mobilenetv3small", 64, spatial=True)
    assert len(encoder.output_shape) == 4


def _trained_captioner_run(tmp_path):
    """A run directory holding a captioner whose small_cnn weights differ from a fresh one's."""
    from vcaption.captioning.lrcn import LRCNCaptioner

    captioner = LRCNCaptioner(vocab_size=9, hidden_units=4, embedding_dim=4, image_embedding_dim=4,
                              encoder="small_cnn", image_size=16)
    encoder = captioner.get_layer("small_cnn")
    encoder.set_weights([w + 0.5 for w in encoder.get_weights()])  # "trained": not the init
    run = tmp_path / "run"
    run.mkdir()
    captioner.save(run / "model.keras")
    return run, encoder.get_weights()


def test_load_encoder_weights_copies_a_trained_models_encoder(tmp_path):
    run, trained = _trained_captioner_run(tmp_path)
    for source in (run, run / "model.keras"):  # a run directory or its .keras file
        fresh = encoders.build_encoder("small_cnn", 16)
        assert not np.array_equal(fresh.get_weights()[0], trained[0])
        assert encoders.load_encoder_weights(fresh, str(source)) is fresh
        for got, want in zip(fresh.get_weights(), trained, strict=True):
            np.testing.assert_array_equal(got, want)

    weights_file = str(tmp_path / "small_cnn.weights.h5")  # an encoder's own weights file
    encoders.load_encoder_weights(encoders.build_encoder("small_cnn", 16), str(run)).save_weights(weights_file)
    fresh = encoders.load_encoder_weights(encoders.build_encoder("small_cnn", 16), weights_file)
    np.testing.assert_array_equal(fresh.get_weights()[0], trained[0])


def test_load_encoder_weights_names_a_source_without_a_matching_encoder(tmp_path):
    run, _ = _trained_captioner_run(tmp_path)
    other_size = encoders.build_encoder("small_cnn", 16, feature_dim=12)  # another output width
    with pytest.raises(ValueError, match="holds no encoder named 'small_cnn'"):
        encoders.load_encoder_weights(other_size, str(run))
    with pytest.raises(ValueError, match="does not exist"):
        encoders.load_encoder_weights(other_size, str(tmp_path / "missing_run"))


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_normalization_matches_keras(policy, training):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, (4, 6, 6, 5)).astype("float32"))
    reference = keras.layers.BatchNormalization(dtype=policy)
    fused = encoders.FusedBatchNormalization(dtype=policy)
    reference.build(x.shape)
    fused.build(x.shape)
    fused.set_weights([w + 0.1 * i for i, w in enumerate(reference.get_weights())])  # not the defaults
    reference.set_weights(fused.get_weights())
    outputs, gradients = [], []
    for layer in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, "float32") ** 2)
        assert y.dtype == layer.compute_dtype
        outputs.append(tf.cast(y, "float32").numpy())
        gradients.append([g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_weights])])
    tolerance = 1e-4 if policy == "float32" else 2e-2
    np.testing.assert_allclose(outputs[1], outputs[0], atol=tolerance * 10, rtol=tolerance)
    for mine, theirs in zip(gradients[1], gradients[0]):
        np.testing.assert_allclose(mine, theirs, atol=tolerance * 100, rtol=tolerance)
    # The same moving-statistics update (Keras keeps the biased batch variance).
    for mine, theirs in zip(fused.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    if training:
        assert not np.allclose(fused.moving_mean.numpy(), 0.2)  # the update did happen


def test_small_cnn_uses_fused_batch_normalization_and_round_trips(tmp_path):
    encoder = encoders.build_small_cnn(16, 8)
    assert any(isinstance(layer, encoders.FusedBatchNormalization) for layer in encoder.layers)
    encoder.save(tmp_path / "cnn.keras")
    loaded = keras.saving.load_model(tmp_path / "cnn.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(_images(16), training=False)),
                               keras.ops.convert_to_numpy(encoder(_images(16), training=False)), rtol=1e-5)
