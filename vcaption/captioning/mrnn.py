"""Multimodal RNN captioners: Karpathy & Fei-Fei (CVPR 2015 §3.2) and Mao et al. m-RNN (ICLR 2015)."""

from __future__ import annotations

import keras
from keras import ops

from vcaption.layers import BroadcastTime, CaptionerBase, FirstStepBias, Recurrence, ScaledTanh

KARPATHY_CELLS = ("relu", "lstm")


@keras.saving.register_keras_serializable(package="vcaption")
class KarpathyMultimodalRNN(CaptionerBase):
    """Karpathy & Fei-Fei's multimodal RNN: the image is a bias on the first step only.

    Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments for Generating Image Descriptions",
    CVPR 2015, §3.2:

    * Eq. 13: b_v = W_hi·CNN_θc(I)
    * Eq. 14: h_t = f(W_hx·x_t + W_hh·h_{t-1} + b_h + 1(t=1)⊙b_v), f = ReLU
    * Eq. 15: y_t = softmax(W_oh·h_t + b_o)

    t=1 is the step that consumes `<start>` (index 0 of `caption_in`). With `cell="lstm"`,
    b_v is added to the four gate pre-activations at t=1. In the forward graph the layer named
    `"first_step_bias"` outputs W_hx·x_t + b_h + 1(t=1)⊙b_v for all t. In the step API the pending
    bias travels in `state["image_bias"]` and `step` returns it zeroed, so only the first call of
    `step` sees the image. `initialize_output_bias(word_counts)` sets b_o to log word frequencies
    (§3.2, "Optimization").

    Args:
        vocab_size: int V (`<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3).
        hidden_units: H (paper: 512).
        embedding_dim: size of x_t, the word embedding (default H).
        cell: `"relu"` (Eq. 14) or `"lstm"`.
        encoder, image_size, feature_dim, encoder_weights, encoder_trainable: visual encoder,
            see `vcaption.encoders.build_encoder` (paper: VGG-16 fc7, F = 4096).
        dropout: rate on the image features, word embeddings and hidden states (not recurrent).
        dtype: dtype policy; logits are always float32.

    Example:
    ```python
    model = KarpathyMultimodalRNN(vocab_size=9000, encoder="features", feature_dim=4096)
    model.initialize_output_bias(word_counts)
    logits = model({"visual": fc7, "caption_in": caption_in})  # [batch, time, 9000]
    ```
    """

    def __init__(self, vocab_size, hidden_units=512, embedding_dim=None, cell="relu",
                 encoder="features", image_size=None, feature_dim=4096, encoder_weights=None,
                 encoder_trainable=True, dropout=0.5, dtype=None, **kwargs):
        if cell not in KARPATHY_CELLS:
            raise ValueError(f"cell must be one of {KARPATHY_CELLS}, got {cell!r}")
        embedding_dim = int(embedding_dim or hidden_units)

        # === Layers ===
        visual, caption_in, image_size = self._build_visual_input(
            encoder, image_size, feature_dim, encoder_weights, encoder_trainable, dtype)
        self.recurrence = Recurrence(
            hidden_units, cell="rnn" if cell == "relu" else "lstm", activation="relu",
            use_bias=False,  # b_h lives in input_projection
            dtype=dtype, name="recurrence")
        self.image_bias = keras.layers.Dense(self.recurrence.projection_units, use_bias=False,
                                             dtype=dtype, name="image_bias")  # W_hi
        self.word_embedding = keras.layers.Embedding(vocab_size, embedding_dim, dtype=dtype,
                                                     name="word_embedding")
        self.input_projection = keras.layers.Dense(self.recurrence.projection_units, dtype=dtype,
                                                   name="input_projection")  # W_hx, b_h
        self._output_layers(vocab_size, dtype)  # W_oh, b_o

        # === Functional Model ===
        features = self._encode_per_caption(visual, caption_in)  # [batch, F]
        features = keras.layers.Dropout(dropout, name="image_dropout")(features)
        b_v = self.image_bias(features)  # Eq. 13, [batch, projection_units]
        x = self.word_embedding(caption_in)  # x_t, [batch, time, E]
        x = keras.layers.Dropout(dropout, name="word_dropout")(x)
        preactivation = self.input_projection(x)  # W_hx·x_t + b_h, [batch, time, projection_units]
        preactivation = FirstStepBias(name="first_step_bias")(preactivation, b_v)  # + 1(t=1)⊙b_v
        h = self.recurrence(preactivation)  # Eq. 14, [batch, time, H]
        h = keras.layers.Dropout(dropout, name="hidden_dropout")(h)
        logits = self.output_cast(self.output_projection(h))  # Eq. 15 (pre-softmax), [batch, time, V]

        self._finish_init(visual, caption_in, logits, vocab_size=vocab_size, encoder=encoder,
                          image_size=image_size, feature_dim=feature_dim,
                          encoder_weights=encoder_weights, encoder_trainable=encoder_trainable,
                          dropout=dropout, dtype=dtype, **kwargs)

        # === Config ===
        self.hidden_units = int(hidden_units)
        self.embedding_dim = embedding_dim
        self.cell = cell

    def initial_state(self, context):
        """`{"h"[, "c"], "image_bias"}`: zero recurrent state and the pending b_v (Eq. 13)."""
        state = self.recurrence.get_initial_state(ops.shape(context)[0])
        state["image_bias"] = self.image_bias(context)
        return state

    def step(self, token_ids, state):
        preactivation = self.input_projection(self.word_embedding(token_ids))  # [batch, projection_units]
        # 1(t=1)⊙b_v: the bias is consumed by the first step and zero afterwards (Eq. 14).
        preactivation = preactivation + ops.cast(state["image_bias"], preactivation.dtype)
        recurrent_state = {key: state[key] for key in self.recurrence.state_keys}
        h, new_state = self.recurrence.step(preactivation, recurrent_state)
        new_state["image_bias"] = ops.zeros_like(state["image_bias"])
        return self._logits(h), new_state

    def get_config(self):
        config = super().get_config()
        config.update({
            "hidden_units": self.hidden_units,
            "embedding_dim": self.embedding_dim,
            "cell": self.cell,
        })
        return config


@keras.saving.register_keras_serializable(package="vcaption")
class MaoMultimodalRNN(CaptionerBase):
    """m-RNN: word embeddings, a ReLU recurrent layer and a multimodal layer fusing the image.

    Mao et al., "Deep Captioning with Multimodal Recurrent Neural Networks (m-RNN)", ICLR 2015,
    §3 and Fig. 2. Per time step t:

    * embedding I (one-hot -> 128) and embedding II (128 -> 256) give w(t);
    * Eq. 2: r(t) = f₂(U_r·r(t-1) + w(t)), f₂ = ReLU, 256-d (so w(t) and r(t) have equal size);
    * Eq. 3: m(t) = g₂(V_w·w(t) + V_r·r(t) + V_I·I), g₂(x) = 1.7159·tanh(2x/3), 512-d;
    * softmax over the vocabulary from m(t).

    The image I (VGG fc7 in the paper) enters every step through V_I·I, computed once per
    caption; V_w·w and V_r·r are computed for all steps after the recurrence, so only U_r·r(t-1)
    runs inside the loop. The paper does not specify a non-linearity for the embedding layers;
    `embedding_activation` defaults to linear.

    Args:
        vocab_size: int V (`<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3).
        embedding_dims: (size of embedding I, size of embedding II = recurrent size), paper (128, 256).
        multimodal_units: size of the multimodal layer (paper 512).
        embedding_activation: activation of embedding layer II.
        encoder, image_size, feature_dim, encoder_weights, encoder_trainable: visual encoder,
            see `vcaption.encoders.build_encoder`.
        dropout: rate on w(t), the image features and m(t).
        dtype: dtype policy; logits are always float32.

    Example:
    ```python
    model = MaoMultimodalRNN(vocab_size=9000, encoder="features", feature_dim=4096)
    logits = model({"visual": fc7, "caption_in": caption_in})  # [batch, time, 9000]
    ```
    """

    def __init__(self, vocab_size, embedding_dims=(128, 256), multimodal_units=512,
                 embedding_activation=None, encoder="features", image_size=None, feature_dim=4096,
                 encoder_weights=None, encoder_trainable=True, dropout=0.5, dtype=None, **kwargs):
        embedding_dims = tuple(int(d) for d in embedding_dims)
        if len(embedding_dims) != 2:
            raise ValueError(f"embedding_dims must have two entries, got {embedding_dims}")
        recurrent_units = embedding_dims[1]

        # === Layers ===
        visual, caption_in, image_size = self._build_visual_input(
            encoder, image_size, feature_dim, encoder_weights, encoder_trainable, dtype)
        self.word_embedding = keras.layers.Embedding(vocab_size, embedding_dims[0], dtype=dtype,
                                                     name="embedding_1")
        self.word_embedding_2 = keras.layers.Dense(recurrent_units, activation=embedding_activation,
                                                   dtype=dtype, name="embedding_2")
        # Eq. 2 has no bias of its own: w(t) carries embedding II's bias.
        self.recurrence = Recurrence(recurrent_units, cell="rnn", activation="relu",
                                     use_bias=False, dtype=dtype, name="recurrence")
        self.multimodal_word = keras.layers.Dense(multimodal_units, dtype=dtype,
                                                  name="multimodal_word")  # V_w (+ bias)
        self.multimodal_recurrent = keras.layers.Dense(multimodal_units, use_bias=False,
                                                       dtype=dtype, name="multimodal_recurrent")  # V_r
        self.multimodal_image = keras.layers.Dense(multimodal_units, use_bias=False, dtype=dtype,
                                                   name="multimodal_image")  # V_I
        self.multimodal_activation = ScaledTanh(dtype=dtype, name="scaled_tanh")  # g₂
        self._output_layers(vocab_size, dtype)

        # === Functional Model ===
        features = self._encode_per_caption(visual, caption_in)  # I, [batch, F]
        features = keras.layers.Dropout(dropout, name="image_dropout")(features)
        w = self.word_embedding_2(self.word_embedding(caption_in))  # w(t), [batch, time, 256]
        w = keras.layers.Dropout(dropout, name="word_dropout")(w)
        r = self.recurrence(w)  # Eq. 2, [batch, time, 256]
        m = keras.layers.Add(name="multimodal_sum")(
            [self.multimodal_word(w), self.multimodal_recurrent(r)])  # [batch, time, 512]
        m = BroadcastTime(name="add_image")(m, self.multimodal_image(features))  # + V_I·I
        m = self.multimodal_activation(m)  # Eq. 3
        m = keras.layers.Dropout(dropout, name="multimodal_dropout")(m)
        logits = self.output_cast(self.output_projection(m))  # [batch, time, V]

        self._finish_init(visual, caption_in, logits, vocab_size=vocab_size, encoder=encoder,
                          image_size=image_size, feature_dim=feature_dim,
                          encoder_weights=encoder_weights, encoder_trainable=encoder_trainable,
                          dropout=dropout, dtype=dtype, **kwargs)

        # === Config ===
        self.embedding_dims = embedding_dims
        self.multimodal_units = int(multimodal_units)
        self.embedding_activation = embedding_activation

    def initial_state(self, context):
        """`{"h", "image_projection"}`: r(0) = 0 and V_I·I, computed once per image."""
        state = self.recurrence.get_initial_state(ops.shape(context)[0])
        state["image_projection"] = self.multimodal_image(context)
        return state

    def step(self, token_ids, state):
        w = self.word_embedding_2(self.word_embedding(token_ids))  # w(t), [batch, 256]
        r, new_state = self.recurrence.step(w, {"h": state["h"]})  # Eq. 2
        m = self.multimodal_word(w) + self.multimodal_recurrent(r)
        m = self.multimodal_activation(m + ops.cast(state["image_projection"], m.dtype))  # Eq. 3
        new_state["image_projection"] = state["image_projection"]
        return self._logits(m), new_state

    def get_config(self):
        config = super().get_config()
        config.update({
            "embedding_dims": list(self.embedding_dims),
            "multimodal_units": self.multimodal_units,
            "embedding_activation": self.embedding_activation,
        })
        return config
