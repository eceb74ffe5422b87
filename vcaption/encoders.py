"""Visual encoders: image `[B, S, S, 3]` (values 0..255) or precomputed features -> features `[B, F]`.

One factory, `build_encoder`, serves every model family so that the captioners, the ranker and the
VQA model configure their vision side with the same five arguments
(`encoder`, `image_size`, `feature_dim`, `encoder_weights`, `encoder_trainable`):

| name               | network                                  | F (vector) |
|--------------------|------------------------------------------|-----------:|
| `"features"`       | identity on precomputed features          | feature_dim |
| `"small_cnn"`      | 3 conv blocks trained from scratch         | feature_dim (default 128) |
| `"vgg16"`          | VGG-16 fc7 (Simonyan & Zisserman), as used by LRCN, Karpathy and m-RNN | 4096 |
| `"resnet50"`       | ResNet-50, global average pool             | 2048 |
| `"efficientnetb0"` | EfficientNet-B0, global average pool       | 1280 |
| `"mobilenetv3small"` / `"mobilenetv3large"` | MobileNetV3, global average pool | 576 / 960 |

Every image encoder takes raw pixel values 0..255 and applies the backbone's own
`preprocess_input` inside the model, so the exported SavedModel needs no separate normalisation.
`trainable=False` freezes the backbone (LRCN Table 6, "FT?" = no); a frozen Keras
BatchNormalization layer also runs in inference mode.
"""

from __future__ import annotations

import math
import os

import keras
import tensorflow as tf

from vcaption import registry

ENCODERS = ("features", "small_cnn", "vgg16", "resnet50", "efficientnetb0",
            "mobilenetv3small", "mobilenetv3large")
IMAGE_ENCODERS = ENCODERS[1:]

# Smallest input side each backbone accepts (with weights=None); ImageNet weights want 224.
MIN_IMAGE_SIZE = {
    "small_cnn": 8,
    "vgg16": 32,
    "resnet50": 32,
    "efficientnetb0": 32,
    "mobilenetv3small": 32,
    "mobilenetv3large": 32,
}
DEFAULT_IMAGE_SIZE = {"small_cnn": 64, "vgg16": 224, "resnet50": 224, "efficientnetb0": 224,
                      "mobilenetv3small": 224, "mobilenetv3large": 224}
FEATURE_DIMS = {"vgg16": 4096, "resnet50": 2048, "efficientnetb0": 1280,
                "mobilenetv3small": 576, "mobilenetv3large": 960}
SMALL_CNN_DEFAULT_DIM = 256
MAX_FEATURE_GRID = 4  # the small CNN's vector variant flattens at most a ~4x4 grid, whatever S


def _preprocess_fn(name):
    apps = keras.applications
    return {
        "vgg16": apps.vgg16.preprocess_input,            # caffe: RGB->BGR, minus ImageNet mean
        "resnet50": apps.resnet50.preprocess_input,      # caffe
        "efficientnetb0": apps.efficientnet.preprocess_input,      # identity: model rescales itself
        "mobilenetv3small": apps.mobilenet_v3.preprocess_input,    # identity: model rescales itself
        "mobilenetv3large": apps.mobilenet_v3.preprocess_input,
    }[name]


@keras.saving.register_keras_serializable(package="vcaption")
class BackbonePreprocessing(keras.layers.Layer):
    """Applies a `keras.applications` backbone's own `preprocess_input` to 0..255 images.

    Args:
        backbone: one of `FEATURE_DIMS`' keys.
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        if backbone not in FEATURE_DIMS:
            raise ValueError(f"unknown backbone {backbone!r}")
        self.backbone = backbone

    def call(self, images):
        return _preprocess_fn(self.backbone)(keras.ops.cast(images, "float32"))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["backbone"] = self.backbone
        return config


@keras.saving.register_keras_serializable(package="vcaption")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs TensorFlow's fused kernel on 4-D channels-last input.

    Keras 3 normalises with half a dozen separate ops (moments, subtract, multiply, ...) whose
    gradients are as many more passes over the activation; on the small CNN's full-resolution
    64x64x16 block they were a third of a training step on CPU. `FusedBatchNormV3` does the same
    in one pass forward and one backward: the small CNN's training step drops from ~75 ms to
    ~49 ms (batch 64, 2-core CPU). Same weights and the same moving-statistics update as the
    Keras layer, so checkpoints are interchangeable; any other case (masks, renorm, another
    axis, another backend) falls back to the Keras implementation.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones([channels])
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros([channels])
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, epsilon=self.epsilon, is_training=True)
            # The kernel returns the Bessel-corrected variance; Keras keeps the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), "float32")
            variance = variance * (count - 1.0) / tf.maximum(count, 2.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon,
                is_training=False)
        return tf.cast(outputs, self.compute_dtype)


def build_small_cnn(image_size: int = 64, feature_dim: int = SMALL_CNN_DEFAULT_DIM,
                    filters=(16, 32, 64, 64), spatial: bool = False, dtype=None,
                    name: str = "small_cnn") -> keras.Model:
    """A small convolutional network trained from scratch (fast on CPU), aware of positions.

    Conv3x3-BN-ReLU-MaxPool blocks with `filters` channels halve the resolution down to a small
    grid (4x4 at S = 64; a larger grid is max-pooled to ~4x4, so the dense layer's fan-in does
    not grow with S). The first block runs at full resolution with few channels: the smallest
    shapes of the built-in world are ~8 pixels wide, and a strided stem loses what tells a diamond
    from a triangle. The vector variant flattens that grid and projects it to `feature_dim`
    with a ReLU dense layer, so the features say *where* things are ("in the top left") — a global
    average pool would keep what but lose where. The spatial variant returns the grid before the
    last pooling, whose cells serve as region features.

    Cost at S = 64 with the defaults: ~27 MFLOP per image forward, against ~1.2 GFLOP for VGG-style
    widths, which is what makes from-scratch training on a 2-core CPU practical.

    Args:
        image_size: input side S (images are `[B, S, S, 3]`, values 0..255).
        feature_dim: output feature size F of the vector variant.
        filters: channels of each pooled block, from full resolution down.
        spatial: return the feature map instead of the vector.
        dtype: dtype policy of the layers.
        name: model name.

    Example:
    ```python
    encoder = build_small_cnn(64)
    features = encoder(images)  # [batch, 256]
    ```
    """
    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = keras.layers.Rescaling(1.0 / 255.0, dtype=dtype, name="rescale")(images)
    for index, width in enumerate(filters):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, dtype=dtype,
                                name=f"conv{index + 1}")(x)
        x = FusedBatchNormalization(dtype=dtype, name=f"bn{index + 1}")(x)
        x = keras.layers.ReLU(dtype=dtype, name=f"relu{index + 1}")(x)
        if spatial and index == len(filters) - 1:
            return keras.Model(images, x, name=name)  # [B, S / 2^(len(filters) - 1), ..., filters[-1]]
        x = keras.layers.MaxPooling2D(2, dtype=dtype, name=f"pool{index + 1}")(x)
    grid = x.shape[1]
    if grid > MAX_FEATURE_GRID:
        # Larger images end on a larger grid; pooled down to ~4x4 the dense layer keeps the fan-in
        # it has at S = 64. With 4x the fan-in (S = 128), Adam's per-weight steps grew the features
        # 4x as fast: within 20 steps the image's LSTM pre-activations averaged |52| (|25| at
        # S = 64), the gates saturated and LRCN-2f's loss stayed at the unigram entropy (3.45).
        pool = math.ceil(grid / MAX_FEATURE_GRID)
        x = keras.layers.MaxPooling2D(pool, padding="same", dtype=dtype, name="grid_pool")(x)
    x = keras.layers.Flatten(dtype=dtype, name="flatten")(x)  # [B, grid * grid * filters[-1]]
    x = keras.layers.Dense(feature_dim, activation="relu", dtype=dtype, name="features")(x)
    return keras.Model(images, x, name=name)


def _application(name, image_size, weights, dtype):
    apps = keras.applications
    input_shape = (image_size, image_size, 3)
    if name == "vgg16":
        # fc7 needs the classifier head; with ImageNet weights that fixes S = 224.
        return apps.VGG16(include_top=True, weights=weights, input_shape=input_shape)
    if name == "resnet50":
        return apps.ResNet50(include_top=False, weights=weights, input_shape=input_shape)
    if name == "efficientnetb0":
        return apps.EfficientNetB0(include_top=False, weights=weights, input_shape=input_shape)
    if name == "mobilenetv3small":
        return apps.MobileNetV3Small(include_top=False, weights=weights, input_shape=input_shape,
                                     include_preprocessing=True)
    if name == "mobilenetv3large":
        return apps.MobileNetV3Large(include_top=False, weights=weights, input_shape=input_shape,
                                     include_preprocessing=True)
    raise ValueError(name)


def build_encoder(name: str = "features", image_size: int | None = None, weights=None,
                  trainable: bool = True, feature_dim: int | None = None, spatial: bool = False,
                  dtype=None) -> keras.Model:
    """Builds the visual encoder used by every model family.

    Args:
        name: one of `ENCODERS`.
        image_size: input side S for image encoders (default: `DEFAULT_IMAGE_SIZE[name]`).
        weights: `None` (random init) or `"imagenet"` / a weights path for the
            `keras.applications` backbones.
        trainable: fine-tune the backbone (LRCN Table 6 "FT?"); `False` freezes it.
        feature_dim: for `"features"`, the size F of the precomputed vectors (required); for
            `"small_cnn"`, the output size (default 128); for a backbone it must be `None` or equal
            `FEATURE_DIMS[name]`.
        spatial: return the last convolutional feature map `[B, h, w, C]` instead of `[B, F]`
            (not available for `"features"`).
        dtype: dtype policy for the layers (the backbones keep their own float32 layers).

    Returns:
        A functional `keras.Model`: `[B, S, S, 3]` float (0..255) -> `[B, F]`, or
        `[B, F] -> [B, F]` for `"features"`.

    Example:
    ```python
    encoder = build_encoder("vgg16", 224, weights="imagenet", trainable=False)
    fc7 = encoder(images)  # [batch, 4096]
    ```
    """
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {name!r}")
    if name == "features":
        if not feature_dim:
            raise ValueError("encoder='features' needs feature_dim")
        if spatial:
            raise ValueError("encoder='features' has no spatial variant")
        features = keras.Input(shape=(int(feature_dim),), name="features")
        outputs = keras.layers.Identity(name="identity")(features)
        return keras.Model(features, outputs, name="feature_input")

    image_size = int(image_size or DEFAULT_IMAGE_SIZE[name])
    if image_size < MIN_IMAGE_SIZE[name]:
        raise ValueError(f"{name} needs image_size >= {MIN_IMAGE_SIZE[name]}, got {image_size}")

    if name == "small_cnn":
        encoder = build_small_cnn(image_size, feature_dim or SMALL_CNN_DEFAULT_DIM,
                                  spatial=spatial, dtype=dtype)
        encoder.trainable = trainable
        return encoder

    if feature_dim not in (None, FEATURE_DIMS[name]):
        raise ValueError(f"{name} produces {FEATURE_DIMS[name]}-d features, got feature_dim={feature_dim}")
    backbone = _application(name, image_size, weights, dtype)
    if name == "vgg16":
        output = backbone.get_layer("block5_pool" if spatial else "fc2").output  # fc2 = fc7
    else:
        output = backbone.output  # [batch, h, w, C]
    trunk = keras.Model(backbone.input, output, name=f"{name}_trunk")
    trunk.trainable = trainable

    images = keras.Input(shape=(image_size, image_size, 3), name="images")
    x = BackbonePreprocessing(name, name="preprocess")(images)
    # A frozen backbone always runs BatchNorm in inference mode.
    x = trunk(x, training=None if trainable else False)
    if not spatial and name != "vgg16":
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)  # [batch, C]
    return keras.Model(images, x, name=name)


def visual_input_and_encoder(name: str, image_size: int | None, feature_dim: int | None, weights=None,
                             trainable: bool = True, dtype=None):
    """The model input named "visual" and the encoder for it, as every model family builds them.

    Returns:
        `(visual, encoder, image_size)`: `keras.Input` `[B, F]` for `"features"` or `[B, S, S, 3]`
        otherwise, the `build_encoder` model, and S (`image_size` unchanged for `"features"`).
    """
    if name == "features":
        if not feature_dim:
            raise ValueError("encoder='features' needs feature_dim")
        visual = keras.Input(shape=(int(feature_dim),), name="visual")
    else:
        image_size = int(image_size or DEFAULT_IMAGE_SIZE.get(name, 224))
        visual = keras.Input(shape=(image_size, image_size, 3), name="visual")
    # feature_dim describes precomputed features only; image encoders have their own width.
    encoder = build_encoder(name, image_size=image_size, weights=weights, trainable=trainable,
                            feature_dim=feature_dim if name == "features" else None, dtype=dtype)
    return visual, encoder, image_size


def encoder_output_dim(name: str, feature_dim: int | None = None) -> int:
    """Size F of the vector `build_encoder(name, ..., feature_dim=feature_dim)` returns."""
    if name == "features":
        if not feature_dim:
            raise ValueError("encoder='features' needs feature_dim")
        return int(feature_dim)
    if name == "small_cnn":
        return int(feature_dim or SMALL_CNN_DEFAULT_DIM)
    return FEATURE_DIMS[name]


def _trained_model(path: str) -> keras.Model:
    """A trained `.keras` model (a file, or a run directory holding `model.keras`), uncompiled."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, "model.keras")
    if not tf.io.gfile.exists(path):
        raise ValueError(f"encoder weights source {path!r} does not exist: give a trained run "
                         "directory (with model.keras), a .keras file or an encoder's .weights.h5")
    return registry.load_model(path)


def load_encoder_weights(encoder: keras.Model, source: str) -> keras.Model:
    """Copies trained weights into `encoder` (in place) and returns it.

    The image features of Antol et al. and of the captioning papers come from a CNN trained on
    another task (ImageNet); on the built-in world, where there is no ImageNet, the CNN of a
    trained object classifier (`object_classifier` preset) or captioner plays that part.

    Args:
        encoder: a `build_encoder` model.
        source: an encoder's own `.weights.h5` (`encoder.save_weights`), or a trained model — a
            `.keras` file or a `python -m vcaption.train` run directory — whose nested encoder has
            the same name and weight shapes (e.g. the `small_cnn` of `runs/object_classifier`).

    Raises:
        ValueError naming `source` when it holds no encoder of this architecture.

    Example:
        >>> load_encoder_weights(vqa_model.encoder, "runs/lrcn_2f")
    """
    if str(source).endswith(".weights.h5"):
        encoder.load_weights(source)
        return encoder
    shapes = [tuple(w.shape) for w in encoder.weights]
    for layer in _trained_model(source)._flatten_layers(include_self=False, recursive=True):
        if (layer.name == encoder.name and isinstance(layer, keras.Model)
                and [tuple(w.shape) for w in layer.weights] == shapes):
            encoder.set_weights(layer.get_weights())
            return encoder
    raise ValueError(f"{source!r} holds no encoder named {encoder.name!r} with weight shapes "
                     f"{shapes[:2]}...: train it with the same encoder and image_size")
