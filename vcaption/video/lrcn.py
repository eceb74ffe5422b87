"""LRCN for video: activity recognition (LRCN §4) and video description (LRCN §6; Venugopalan et al. 2015)."""

from __future__ import annotations

import keras
from keras import ops

from vcaption.captioning.lrcn import LRCNCaptioner
from vcaption.layers import IMAGE_ENCODER_KEYS, Recurrence

# ================================================================================================
# Video: activity recognition (LRCN §4) and video description (LRCN §6; Venugopalan et al. 2015).
# ================================================================================================
ACTIVITY_STREAMS = ("frames", "flow")
VIDEO_ENCODERS = ("mean_pool", "lstm")


@keras.saving.register_keras_serializable(package="vcaption")
class LastTimeStep(keras.layers.Layer):
    """`[B, T, D] -> [B, D]`: the last step of a sequence (an encoder LSTM's summary h_T)."""

    def call(self, sequence):
        return sequence[:, -1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="vcaption")
class FrameWise(keras.layers.Wrapper):
    """Applies an image layer to every frame: `[B, T, S, S, 3] -> [B, T, F]`, weights tied across time.

    Unlike `keras.layers.TimeDistributed` (one call per step, or a `vectorized_map` when T is
    dynamic) this folds time into the batch, so the CNN runs once on B·T frames and its batch
    normalization sees all of them.
    """

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build((None, *input_shape[2:]))
        self.built = True

    def call(self, frames, training=None):
        shape = ops.shape(frames)
        flat = ops.reshape(frames, (-1, *frames.shape[2:]))  # [B * T, S, S, 3]
        features = self.layer(flat, training=training)  # [B * T, F]
        time = frames.shape[1] if frames.shape[1] is not None else shape[1]
        if time is None:  # a dynamic time axis in a TensorFlow graph
            import tensorflow as tf

            time = tf.shape(frames)[1]
        return ops.reshape(features, (-1, time, features.shape[-1]))  # [B, T, F]

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], inner[-1])


def build_frame_cnn(image_size: int, feature_dim: int, filters=(16, 32, 64), dtype=None,
                    name: str = "frame_cnn", global_pool: bool = False) -> keras.Model:
    """The per-frame CNN: `vcaption.encoders.build_small_cnn`; one set of weights for every frame
    (LRCN Fig. 1: the visual features φ_V(x_t) share their parameters across time).

    `global_pool=True` adds a global max pool of the last feature map beside the flattened grid:
    the grid says where things are, the pool what they are wherever they are. A moving object
    crosses many grid cells, and position-specific weights alone must learn its colour and shape
    once per cell; the pooled features learn them once.
    """
    from vcaption import encoders

    if not global_pool:
        return encoders.build_small_cnn(image_size, feature_dim, filters=tuple(filters), dtype=dtype,
                                        name=name)
    grid = encoders.build_small_cnn(image_size, feature_dim, filters=tuple(filters), spatial=True,
                                    dtype=dtype, name=f"{name}_grid")
    where = keras.layers.Flatten(dtype=dtype, name="flatten")(
        keras.layers.MaxPooling2D(2, dtype=dtype, name="pool")(grid.output))
    what = keras.layers.GlobalMaxPooling2D(dtype=dtype, name="global_max_pool")(grid.output)
    x = keras.layers.Concatenate(dtype=dtype, name="what_and_where")([where, what])
    x = keras.layers.Dense(feature_dim, activation="relu", dtype=dtype, name="features")(x)
    return keras.Model(grid.input, x, name=name)


@keras.saving.register_keras_serializable(package="vcaption")
class LRCNActivityRecognizer(keras.Model):
    """LRCN activity recognition: CNN per frame -> LSTM -> per-frame softmax (LRCN §4, Fig. 3).

    Every frame x_t goes through the same CNN (weights tied across time, `FrameWise`),
    φ_V(x_t) feeds an LSTM (Eq. 2), and each step predicts the activity,
    P(y_t = c) ∝ exp(W_hz·h_t + b_z) (Eq. 1 applied per step). The training target of every frame
    is the video's label; a clip's prediction is the mean of its frames' probabilities, and a video's
    the mean over clips of 16 frames taken with stride 8 (`clip_average_probabilities`).
    With `single_frame=True` the LSTM is left out: the single-frame baseline of LRCN Table 1, a CNN
    that classifies each frame alone (its probabilities averaged in the same way).

    The input is named after the stream, so `model(dataset_inputs)` picks "frames" (RGB) or
    "flow" (flow images, `vcaption.images.optical_flow_images`) from a `task="video"` element.

    Args:
        num_classes: number of activities.
        stream: "frames" (RGB) or "flow".
        hidden_units: LSTM size (paper: 256 for RGB, 1024 for flow; `None` picks those).
        single_frame: no LSTM (the single-frame baseline).
        image_size: frame side S.
        cnn_features: size of φ_V(x_t).
        cnn_filters: channels of the per-frame CNN's blocks.
        num_frames: clip length the model is built for (`None`: any).
        dropout: rate on the CNN features and the LSTM outputs.

    Example:
    ```python
    model = LRCNActivityRecognizer(num_classes=6, stream="flow", hidden_units=64, image_size=32)
    logits = model({"flow": flow_images})  # [batch, time, 6]
    ```

    Reference: Donahue et al., PAMI 2017, §4 (activity recognition), Table 1.
    """

    def __init__(self, num_classes, stream="frames", hidden_units=None, single_frame=False,
                 image_size=32, cnn_features=128, cnn_filters=(16, 32, 64), num_frames=None,
                 dropout=0.5, **kwargs):
        if stream not in ACTIVITY_STREAMS:
            raise ValueError(f"stream must be one of {ACTIVITY_STREAMS}, got {stream!r}")
        if hidden_units is None:
            hidden_units = 256 if stream == "frames" else 1024  # LRCN §4
        # === Layers ===
        self.frame_cnn = build_frame_cnn(image_size, cnn_features, cnn_filters)
        self.input_projection = self.recurrence = None
        if not single_frame:
            self.recurrence = Recurrence(hidden_units, cell="lstm", name="recurrence")
            self.input_projection = keras.layers.Dense(self.recurrence.projection_units,
                                                       use_bias=False, name="input_projection")
        self.classifier = keras.layers.Dense(num_classes, name="logits")

        # === Functional Model ===
        clip = keras.Input(shape=(num_frames, image_size, image_size, 3), name=stream)
        x = FrameWise(self.frame_cnn, name="per_frame_cnn")(clip)  # [B, T, F]
        x = keras.layers.Dropout(dropout, name="cnn_dropout")(x)
        if not single_frame:
            x = self.recurrence(self.input_projection(x))  # [B, T, H]
            x = keras.layers.Dropout(dropout, name="hidden_dropout")(x)
        logits = self.classifier(x)  # [B, T, C]: one prediction per frame
        super().__init__(inputs={stream: clip}, outputs=logits, **kwargs)

        # === Config ===
        self.num_classes = int(num_classes)
        self.stream = stream
        self.hidden_units = int(hidden_units)
        self.single_frame = bool(single_frame)
        self.image_size = int(image_size)
        self.cnn_features = int(cnn_features)
        self.cnn_filters = tuple(int(f) for f in cnn_filters)
        self.num_frames = num_frames
        self.dropout = float(dropout)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_classes": self.num_classes,
                "stream": self.stream, "hidden_units": self.hidden_units,
                "single_frame": self.single_frame, "image_size": self.image_size,
                "cnn_features": self.cnn_features, "cnn_filters": list(self.cnn_filters),
                "num_frames": self.num_frames, "dropout": self.dropout}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def clip_average_probabilities(logits_fn, frames, clip_length: int = 16, clip_stride: int = 8):
    """Video -> class probabilities averaged over frames and clips (LRCN §4 test protocol).

    The video is cut into clips of `clip_length` frames every `clip_stride` frames (a video shorter
    than a clip repeats its last frame); `logits_fn` gives per-frame logits of each clip, and the
    softmax probabilities of all frames of all clips are averaged.

    Args:
        logits_fn: `[N, clip_length, S, S, 3] -> [N, clip_length, C]` (a recognizer, or its call).
        frames: `[B, F, S, S, 3]` float (0..255).
        clip_length: frames per clip (LRCN: 16).
        clip_stride: frames between clip starts (LRCN: 8).

    Returns:
        float32 `[B, C]`.
    """
    import tensorflow as tf

    frames = tf.convert_to_tensor(frames)
    count = tf.shape(frames)[1]
    missing = tf.maximum(clip_length - count, 0)
    frames = tf.concat([frames, tf.repeat(frames[:, -1:], missing, axis=1)], axis=1)
    clips = tf.signal.frame(frames, clip_length, clip_stride, axis=1)  # [B, clips, L, S, S, 3]
    shape = tf.shape(clips)
    flat = tf.reshape(clips, tf.concat([[-1, clip_length], shape[3:]], 0))  # [B * clips, L, S, S, 3]
    probabilities = tf.nn.softmax(tf.cast(logits_fn(flat), tf.float32), axis=-1)  # [B*clips, L, C]
    probabilities = tf.reshape(probabilities, [shape[0], -1, tf.shape(probabilities)[-1]])
    return tf.reduce_mean(probabilities, axis=1)  # [B, C]: mean over clips x frames


@keras.saving.register_keras_serializable(package="vcaption")
class VideoLRCNCaptioner(LRCNCaptioner):
    """Video description with an `LRCNCaptioner` decoder over a video encoder (the visual input
    enters the decoder at every step).

    The per-frame CNN (weights tied across time) turns frames into φ_V(x_t); `video_encoder` then
    summarises them into one vector v that the decoder sees at every step:

    * `"mean_pool"`: v = mean_t φ_V(x_t) (Venugopalan et al., NAACL 2015, "Translating Videos to
      Natural Language Using Deep RNNs", §3: mean-pooled fc7 at every step of a 2-layer LSTM;
      use `variant="2u"`). The mean forgets the order of the frames.
    * `"lstm"`: v = h_T of an encoder LSTM over φ_V(x_1..T), at every step of a decoder (use
      `variant="2f"`, the factored decoder of LRCN §5). Not LRCN §6, whose decoders read a
      predicted semantic tuple (`vcaption.video.semantic_tuple`).

    Everything after the encoder (embedding, recurrences, `initial_state`/`step`) is the image
    captioner's, so the shared decoders in `vcaption.decoding` run it at any beam width.

    Args:
        num_frames: T, frames per video (inputs `{"visual": [B, T, S, S, 3], "caption_in"}`).
        video_encoder: `"mean_pool"` or `"lstm"`.
        encoder_units: size of the encoder LSTM (`"lstm"`).
        frame_features: size of φ_V(x_t).
        cnn_filters: channels of the per-frame CNN's blocks.
        global_pool: per-frame CNN with a global max pool beside its grid (`build_frame_cnn`).
        **kwargs: `LRCNCaptioner` arguments (vocab_size, variant, hidden_units, embedding_dim,
            image_embedding_dim, image_size, dropout, ...).

    Example:
    ```python
    model = VideoLRCNCaptioner(vocab_size=60, num_frames=16, video_encoder="lstm", variant="2f",
                               image_size=32, hidden_units=128, embedding_dim=64)
    logits = model({"visual": frames, "caption_in": caption_in})  # [batch, time, 60]
    ```

    Reference: Donahue et al., PAMI 2017, §5; Venugopalan et al., NAACL 2015.
    """

    def __init__(self, vocab_size, num_frames=16, video_encoder="lstm", encoder_units=128,
                 frame_features=128, cnn_filters=(16, 32, 64), image_size=32, global_pool=False,
                 **kwargs):
        if video_encoder not in VIDEO_ENCODERS:
            raise ValueError(f"video_encoder must be one of {VIDEO_ENCODERS}, got {video_encoder!r}")
        for key in ("encoder", "feature_dim", "encoder_weights", "encoder_trainable"):
            kwargs.pop(key, None)  # fixed by the video encoder (present in saved configs)
        self._video = dict(num_frames=int(num_frames), video_encoder=video_encoder,
                           encoder_units=int(encoder_units), frame_features=int(frame_features),
                           cnn_filters=tuple(int(f) for f in cnn_filters), global_pool=bool(global_pool))
        super().__init__(vocab_size, encoder="video", image_size=image_size,
                         feature_dim=frame_features, **kwargs)
        self.num_frames = self._video["num_frames"]
        self.video_encoder = video_encoder
        self.encoder_units = self._video["encoder_units"]
        self.frame_features = self._video["frame_features"]
        self.cnn_filters = self._video["cnn_filters"]
        self.global_pool = self._video["global_pool"]

    def _build_visual_input(self, encoder, image_size, feature_dim, encoder_weights,
                            encoder_trainable, dtype):
        video = self._video
        image_size = int(image_size)
        frames = keras.Input(shape=(video["num_frames"], image_size, image_size, 3), name="frames")
        cnn = build_frame_cnn(image_size, video["frame_features"], video["cnn_filters"], dtype,
                              global_pool=video["global_pool"])
        x = FrameWise(cnn, name="per_frame_cnn")(frames)  # [B, T, F]
        if video["video_encoder"] == "mean_pool":
            summary = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)  # [B, F]
        else:
            recurrence = Recurrence(video["encoder_units"], cell="lstm", name="encoder_recurrence")
            projection = keras.layers.Dense(recurrence.projection_units, use_bias=False,
                                            name="encoder_projection")(x)  # [B, T, 4H_e]
            summary = LastTimeStep(name="last_step")(recurrence(projection))  # [B, H_e]
        self.encoder = keras.Model(frames, summary, name="video_encoder")
        visual = keras.Input(shape=(video["num_frames"], image_size, image_size, 3), name="visual")
        caption_in = keras.Input(shape=(None,), dtype="int32", name="caption_in")
        return visual, caption_in, image_size

    def _encode_per_caption(self, visual, caption_in):
        # Video batches hold one description per video: no per-caption repetition of the features.
        return self.encoder(visual)  # [B, H_e or F]

    def get_config(self):
        config = super().get_config()
        for key in IMAGE_ENCODER_KEYS:
            config.pop(key, None)
        config.update(num_frames=self.num_frames, video_encoder=self.video_encoder,
                      encoder_units=self.encoder_units, frame_features=self.frame_features,
                      cnn_filters=list(self.cnn_filters), global_pool=self.global_pool)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
