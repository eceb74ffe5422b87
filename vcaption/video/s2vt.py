"""S2VT: sequence to sequence, video to text (Venugopalan et al., ICCV 2015)."""

from __future__ import annotations

import keras
from keras import ops

from vcaption.layers import IMAGE_ENCODER_KEYS, CaptionerBase, Recurrence
from vcaption.video.lrcn import FrameWise, build_frame_cnn


@keras.saving.register_keras_serializable(package="vcaption")
class PadTime(keras.layers.Layer):
    """Zero steps before or after a sequence: `[B, T, D]`, reference `[B, R, *]` -> `[B, T + R, D]`.

    S2VT runs one stack over frames then words; the stream that is silent in a phase gets zeros
    ("<pad>" inputs, Venugopalan et al. 2015 §3.2).
    """

    def __init__(self, where="after", **kwargs):
        super().__init__(**kwargs)
        if where not in ("before", "after"):
            raise ValueError(f"where must be 'before' or 'after', got {where!r}")
        self.where = where

    def call(self, sequence, reference):
        shape = ops.shape(sequence)
        zeros = ops.zeros((shape[0], ops.shape(reference)[1], shape[2]), sequence.dtype)  # [B, R, D]
        parts = [sequence, zeros] if self.where == "after" else [zeros, sequence]
        return ops.concatenate(parts, axis=1)

    def compute_output_shape(self, sequence_shape, reference_shape):
        steps = None if sequence_shape[1] is None or reference_shape[1] is None else \
            sequence_shape[1] + reference_shape[1]
        return (sequence_shape[0], steps, sequence_shape[2])

    def get_config(self):
        return {**super().get_config(), "where": self.where}


@keras.saving.register_keras_serializable(package="vcaption")
class DropFirstSteps(keras.layers.Layer):
    """`[B, T + L, D] -> [B, L, D]`: the decoding phase of an S2VT stack."""

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = int(steps)

    def call(self, sequence):
        return sequence[:, self.steps:]

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] - self.steps
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package="vcaption")
class S2VTCaptioner(CaptionerBase):
    """One stack of two LSTMs that first reads the frames, then emits the words.

    Venugopalan et al. (ICCV 2015) §3.2, Fig. 2. For t = 1..T (encoding) the first LSTM reads the
    frame features φ_V(x_t) and the second reads [h¹_t, <pad>]; no loss is computed. For the
    decoding steps the first LSTM reads <pad> (zeros) and the second [h¹_t, w_{t-1}] (<BOS> first),
    and the softmax over the vocabulary reads h²_t (Eq. 3: p(y|x) = Π p(y_t | h_{n+t-1}, y_{t-1})).
    The same weights serve both phases; only the inputs change. For decoding,
    `initial_state(context)` runs the T encoding steps and `step` one decoding step, the API the
    shared decoders (`vcaption.decoding`) drive.

    Args:
        vocab_size: int V, including `<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3.
        num_frames: T, frames per video (inputs `{"visual": [B, T, S, S, 3], "caption_in"}`).
        hidden_units: H of both LSTMs (paper: 1000).
        embedding_dim: word embedding size (paper: 500).
        frame_features: size of φ_V(x_t) (paper: fc7 projected to 500).
        cnn_filters: channels of the per-frame CNN's blocks.
        image_size: frame side S.
        dropout: rate on the inputs and the LSTM outputs (not inside the recurrence).

    Example:
    ```python
    model = S2VTCaptioner(vocab_size=60, num_frames=16, image_size=32, hidden_units=128)
    logits = model({"visual": frames, "caption_in": caption_in})  # [batch, time, 60]
    state = model.initial_state(model.encode_visual(frames))  # after reading the T frames
    logits_t, state = model.step(token_ids, state)
    ```

    Reference: Venugopalan et al., "Sequence to Sequence — Video to Text", ICCV 2015, §3.2.
    """

    def __init__(self, vocab_size, num_frames=16, hidden_units=256, embedding_dim=128,
                 frame_features=128, cnn_filters=(16, 32, 64), image_size=32, dropout=0.5,
                 dtype=None, **kwargs):
        for key in ("encoder", "feature_dim", "encoder_weights", "encoder_trainable"):
            kwargs.pop(key, None)  # fixed by the per-frame CNN (present in saved configs)
        num_frames, image_size = int(num_frames), int(image_size)
        # === Layers ===
        frames = keras.Input(shape=(num_frames, image_size, image_size, 3), name="frames")
        cnn = build_frame_cnn(image_size, frame_features, cnn_filters, dtype)
        self.encoder = keras.Model(
            frames, FrameWise(cnn, name="per_frame_cnn")(frames),
            name="frame_encoder")  # [B, T, S, S, 3] -> [B, T, F]
        self.word_embedding = keras.layers.Embedding(vocab_size, embedding_dim, dtype=dtype,
                                                     name="word_embedding")
        self.recurrence_1 = Recurrence(hidden_units, cell="lstm", dtype=dtype, name="recurrence_1")
        self.recurrence_2 = Recurrence(hidden_units, cell="lstm", dtype=dtype, name="recurrence_2")
        units = self.recurrence_1.projection_units
        dense = lambda name: keras.layers.Dense(units, use_bias=False, dtype=dtype, name=name)  # noqa: E731
        self.frame_projection = dense("frame_projection")  # layer 1 <- φ_V(x_t)
        self.hidden_projection = dense("hidden_projection")  # layer 2 <- h¹_t
        self.word_projection = dense("word_projection")  # layer 2 <- w_{t-1}
        self._output_layers(vocab_size, dtype)

        # === Functional Model ===
        visual = keras.Input(shape=(num_frames, image_size, image_size, 3), name="visual")
        caption_in = keras.Input(shape=(None,), dtype="int32", name="caption_in")
        features = keras.layers.Dropout(dropout, name="frame_dropout")(self.encoder(visual))
        words = keras.layers.Dropout(dropout, name="word_dropout")(self.word_embedding(caption_in))
        # Layer 1: frames, then <pad> while the words are emitted.           [B, T + L, 4H]
        x = PadTime("after", name="pad_after_frames")(self.frame_projection(features), words)
        h1 = keras.layers.Dropout(dropout, name="hidden_dropout_1")(self.recurrence_1(x))
        # Layer 2: [h¹_t, <pad>] while reading, [h¹_t, w_{t-1}] while writing. [B, T + L, 4H]
        words_in_time = PadTime("before", name="pad_before_words")(self.word_projection(words), features)
        x = keras.layers.Add(name="layer_2_inputs")([self.hidden_projection(h1), words_in_time])
        h2 = keras.layers.Dropout(dropout, name="hidden_dropout_2")(self.recurrence_2(x))
        h2 = DropFirstSteps(num_frames, name="decoding_phase")(h2)  # [B, L, H]
        logits = self.output_cast(self.output_projection(h2))  # [B, L, V]

        self._finish_init(visual, caption_in, logits, vocab_size=vocab_size, encoder="video",
                          image_size=image_size, feature_dim=frame_features, encoder_weights=None,
                          encoder_trainable=True, dropout=dropout, dtype=dtype, **kwargs)
        self.image_size = image_size
        # === Config ===
        self.num_frames = num_frames
        self.hidden_units = int(hidden_units)
        self.embedding_dim = int(embedding_dim)
        self.frame_features = int(frame_features)
        self.cnn_filters = tuple(int(f) for f in cnn_filters)

    def _layer_states(self, state, index):
        return {key: state[f"{key}{index}"] for key in ("h", "c")}

    def initial_state(self, context):
        """Reads the frames: `context` [B, T, F] (per-frame CNN features) -> {"h1", "c1", "h2", "c2"}."""
        batch_size = ops.shape(context)[0]
        state_1 = self.recurrence_1.get_initial_state(batch_size)
        state_2 = self.recurrence_2.get_initial_state(batch_size)
        for t in range(self.num_frames):  # T is static: an unrolled encoding phase
            h1, state_1 = self.recurrence_1.step(self.frame_projection(context[:, t]), state_1)
            _, state_2 = self.recurrence_2.step(self.hidden_projection(h1), state_2)
        return {"h1": state_1["h"], "c1": state_1["c"], "h2": state_2["h"], "c2": state_2["c"]}

    def step(self, token_ids, state):
        words = self.word_embedding(token_ids)  # [B, E]
        pad = ops.zeros((ops.shape(words)[0], self.recurrence_1.projection_units), words.dtype)
        h1, state_1 = self.recurrence_1.step(pad, self._layer_states(state, 1))
        h2, state_2 = self.recurrence_2.step(
            self.hidden_projection(h1) + self.word_projection(words), self._layer_states(state, 2))
        return self._logits(h2), {"h1": state_1["h"], "c1": state_1["c"],
                                  "h2": state_2["h"], "c2": state_2["c"]}

    def get_config(self):
        config = super().get_config()
        for key in IMAGE_ENCODER_KEYS:
            config.pop(key, None)
        config.update(num_frames=self.num_frames, hidden_units=self.hidden_units,
                      embedding_dim=self.embedding_dim, frame_features=self.frame_features,
                      cnn_filters=list(self.cnn_filters))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
