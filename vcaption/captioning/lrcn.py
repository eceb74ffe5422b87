"""LRCN image captioner (Donahue et al., "Long-term Recurrent Convolutional Networks", PAMI 2017 §5)."""

from __future__ import annotations

import keras

from vcaption.layers import BroadcastTime, CaptionerBase, Recurrence

VARIANTS = ("1u", "2u", "2f")


@keras.saving.register_keras_serializable(package="vcaption")
class LRCNCaptioner(CaptionerBase):
    """CNN + (stacked) LSTM captioner with the image at every time step.

    Donahue et al. (PAMI 2017) §5, Fig. 4 and Table 6 compare three architectures:

    * `"1u"`: one recurrent layer whose input at every step is [word embedding, image features];
    * `"2u"`: two stacked layers; layer 1 sees [word, image], layer 2 sees layer 1's output;
    * `"2f"` (factored): layer 1 sees only the word embedding (it models the partial caption,
      independent of the image); layer 2 sees [layer-1 output, image].

    The image features are embedded once ("fc8", `image_embedding_dim`) and enter at every step;
    the softmax over the vocabulary reads the top layer (Eq. 1: p(w_t) ∝ exp(W_hz·h_t + b_z)).
    Because W·[x_t; v] = W_x·x_t + W_v·v, the image projection W_v·v is computed once per caption
    and broadcast over time, and the word/hidden projections of all steps are one matmul each;
    only h_{t-1}·U runs inside the loop (`vcaption.layers.Recurrence`).
    Dropout acts on the embeddings and on each layer's output, never inside the recurrence.

    Args:
        vocab_size: int V, including `<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3.
        variant: `"1u"`, `"2u"` or `"2f"`.
        cell: `"lstm"` or `"rnn"` (vanilla tanh RNN, LRCN Table 6's RNN rows).
        hidden_units: H of each recurrent layer (paper: 1000).
        embedding_dim: word embedding size (paper: 1000).
        image_embedding_dim: size of the learned image embedding fed to the recurrence
            (paper: 1000, the fc8 layer); `None` feeds the encoder features directly.
        encoder: visual encoder name, see `vcaption.encoders.build_encoder`.
        image_size: image side S for image encoders.
        feature_dim: F for `encoder="features"` (paper's VGG fc7: 4096).
        encoder_weights: `None` or `"imagenet"` for `keras.applications` backbones.
        encoder_trainable: fine-tune the CNN (Table 6 "FT?").
        dropout: rate on non-recurrent connections.
        dtype: dtype policy (e.g. `"mixed_bfloat16"`); logits are always float32.

    Example:
    ```python
    model = LRCNCaptioner(vocab_size=9000, variant="2f", encoder="features", feature_dim=4096)
    logits = model({"visual": fc7, "caption_in": caption_in})  # [batch, time, 9000]
    state = model.initial_state(model.encode_visual(fc7))
    logits_t, state = model.step(token_ids, state)
    ```

    Reference: Donahue et al., PAMI 2017, §5 (image description), Fig. 4, Table 6.
    """

    def __init__(self, vocab_size, variant="2f", cell="lstm", hidden_units=1000,
                 embedding_dim=1000, image_embedding_dim=1000, encoder="features", image_size=None,
                 feature_dim=4096, encoder_weights=None, encoder_trainable=True, dropout=0.5,
                 dtype=None, **kwargs):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        num_layers = 1 if variant == "1u" else 2
        image_layer = 2 if variant == "2f" else 1  # the layer whose input includes the image

        # === Layers ===
        visual, caption_in, image_size = self._build_visual_input(
            encoder, image_size, feature_dim, encoder_weights, encoder_trainable, dtype)
        self.image_embedding = (keras.layers.Dense(image_embedding_dim, dtype=dtype,
                                                   name="image_embedding")
                                if image_embedding_dim else None)
        self.word_embedding = keras.layers.Embedding(vocab_size, embedding_dim, dtype=dtype,
                                                     name="word_embedding")
        self.recurrences = []
        self.input_projections = []  # per layer: W_x (word for layer 1, h below for layer 2)
        for index in range(num_layers):
            recurrence = Recurrence(hidden_units, cell=cell, activation="tanh", dtype=dtype,
                                    name=f"recurrence_{index + 1}")
            self.recurrences.append(recurrence)
            self.input_projections.append(keras.layers.Dense(
                recurrence.projection_units, use_bias=False, dtype=dtype,
                name=f"input_projection_{index + 1}"))
        # W_v: image -> pre-activations of the layer that sees the image; once per caption.
        self.image_projection = keras.layers.Dense(
            self.recurrences[image_layer - 1].projection_units, use_bias=False, dtype=dtype,
            name="image_projection")
        self._output_layers(vocab_size, dtype)

        # === Functional Model ===
        features = self._encode_per_caption(visual, caption_in)  # [batch, F]
        image = self.image_embedding(features) if self.image_embedding else features
        image = keras.layers.Dropout(dropout, name="image_dropout")(image)  # [batch, D_v]
        image_projection = self.image_projection(image)  # [batch, projection_units]
        x = self.word_embedding(caption_in)  # [batch, time, E]
        x = keras.layers.Dropout(dropout, name="word_dropout")(x)
        for index in range(num_layers):
            projection = self.input_projections[index](x)  # [batch, time, projection_units]
            if index + 1 == image_layer:
                projection = BroadcastTime(name=f"add_image_{index + 1}")(projection,
                                                                          image_projection)
            x = self.recurrences[index](projection)  # [batch, time, H]
            x = keras.layers.Dropout(dropout, name=f"hidden_dropout_{index + 1}")(x)
        logits = self.output_cast(self.output_projection(x))  # [batch, time, V]

        self._finish_init(visual, caption_in, logits, vocab_size=vocab_size, encoder=encoder,
                          image_size=image_size, feature_dim=feature_dim,
                          encoder_weights=encoder_weights, encoder_trainable=encoder_trainable,
                          dropout=dropout, dtype=dtype, **kwargs)

        # === Config ===
        self.variant = variant
        self.cell = cell
        self.hidden_units = int(hidden_units)
        self.embedding_dim = int(embedding_dim)
        self.image_embedding_dim = int(image_embedding_dim) if image_embedding_dim else None
        self.num_layers = num_layers
        self.image_layer = image_layer

    def _visual_context(self, features):
        return self.image_embedding(features) if self.image_embedding else features

    def initial_state(self, context):
        """`{"h1", "c1"[, "h2", "c2"], "image_projection"}`; c* only for LSTMs.

        `image_projection` [B, 4H or H] is W_v·v for the layer that sees the image, computed
        here once so that `step` only projects the new word.
        """
        batch_size = keras.ops.shape(context)[0]
        state = {}
        for index, recurrence in enumerate(self.recurrences):
            for key, value in recurrence.get_initial_state(batch_size).items():
                state[f"{key}{index + 1}"] = value
        state["image_projection"] = self.image_projection(context)
        return state

    def step(self, token_ids, state):
        x = self.word_embedding(token_ids)  # [batch, E]
        new_state = {"image_projection": state["image_projection"]}
        for index, recurrence in enumerate(self.recurrences):
            projection = self.input_projections[index](x)  # [batch, projection_units]
            if index + 1 == self.image_layer:
                projection = projection + keras.ops.cast(state["image_projection"],
                                                         projection.dtype)
            layer_state = {key: state[f"{key}{index + 1}"] for key in recurrence.state_keys}
            x, layer_state = recurrence.step(projection, layer_state)
            for key, value in layer_state.items():
                new_state[f"{key}{index + 1}"] = value
        return self._logits(x), new_state

    def get_config(self):
        config = super().get_config()
        config.update({
            "variant": self.variant,
            "cell": self.cell,
            "hidden_units": self.hidden_units,
            "embedding_dim": self.embedding_dim,
            "image_embedding_dim": self.image_embedding_dim,
        })
        return config
