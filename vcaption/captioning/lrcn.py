"""LRCN image captioner (Donahue et al., "Long-term Recurrent Convolutional Networks", PAMI 2017 §5)."""

from __future__ import annotations

import keras

from vcaption.layers import (BroadcastTime, CaptionerBase, Recurrence, SharedWeightsLSTM,
                             resolve_recurrent_implementation)

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

    On a GPU the LSTMs of the teacher-forced pass (training, perplexity) run as
    `keras.layers.LSTM` in its cuDNN configuration instead, one fused kernel per layer and
    sequence: the layer's input is [x_t; v] and its kernel [W_x; W_v], the same variables as
    above (`vcaption.layers.SharedWeightsLSTM`). The two paths compute the same logits from the same weights
    and save the same checkpoint layout, and decoding (`step`, exports) is the same in both.

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
        recurrent_implementation: how the teacher-forced pass runs the LSTMs: `"scan"` (the
            loop over precomputed projections; fastest on a CPU), `"cudnn"` (`keras.layers.LSTM`,
            fused cuDNN kernel on a GPU, Keras' own loop elsewhere) or `"auto"`: `"cudnn"` when
            TensorFlow sees a GPU and `cell="lstm"`, else `"scan"`. Resolved when the model is
            built, so a saved `"auto"` model picks again on the machine that loads it. The cuDNN
            op has no XLA kernel: a `"cudnn"` model does not `jit_compile`.
        visual_word_scores: also score every vocabulary word from the image alone (one linear
            layer over the visual context) and add those scores to the LSTM's at every step: the
            late fusion of Venugopalan et al.'s Novel Object Captioner (the lecture's NOC figure:
            "element-wise sum of the visual and language outputs"; Hendricks et al.'s DCC). Words
            then owe part of their score to what the image shows whatever came before them, which
            is what naming an unseen colour-shape pair needs (a plain LSTM learns "never triangle
            after red" from captions that never say it). False: Donahue et al.'s Eq. 1 as is.
            Measured on the default world (lrcn_2f settings, 2026-12-05): worse, not better:
            test_novel held-out-pair recall 2.1% (without: 21.5%), test CIDEr-D 3.92 (4.25),
            final training loss 0.36 (0.29) -- the LSTM learns to fight the image-only scores.
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
                 recurrent_implementation="auto", visual_word_scores=False, dtype=None, **kwargs):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        active_implementation = resolve_recurrent_implementation(recurrent_implementation, cell)
        num_layers = 1 if variant == "1u" else 2
        self.image_layer = 2 if variant == "2f" else 1  # the layer whose input includes the image

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
            self.recurrences[self.image_layer - 1].projection_units, use_bias=False, dtype=dtype,
            name="image_projection")
        self.add_image = BroadcastTime(name=f"add_image_{self.image_layer}")
        self.image_dropout = keras.layers.Dropout(dropout, name="image_dropout")
        self.word_dropout = keras.layers.Dropout(dropout, name="word_dropout")
        self.hidden_dropouts = [keras.layers.Dropout(dropout, name=f"hidden_dropout_{index + 1}")
                                for index in range(num_layers)]
        self._output_layers(vocab_size, dtype)
        # Late fusion (NOC): image -> a score per word, added to the LSTM's scores at every step.
        self.visual_word_scores = (keras.layers.Dense(vocab_size, dtype=dtype, name="visual_word_scores")
                                   if visual_word_scores else None)
        self.add_visual_word_scores = BroadcastTime(name="add_visual_word_scores")
        # The cuDNN path's keras.layers.LSTM per recurrence: no variables of their own.
        self.fused_lstms = ([SharedWeightsLSTM(hidden_units, dtype=dtype, name=f"lstm_{index + 1}")
                             for index in range(num_layers)]
                            if active_implementation == "cudnn" else [])

        # === Functional Model ===
        # Always the scan path: the graph fixes the layers' saved layout, which the cuDNN path
        # (`call`) shares, so a checkpoint of either loads into both.
        logits = self._teacher_forced(visual, caption_in, fused=False)  # [batch, time, V]

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
        self.recurrent_implementation = recurrent_implementation
        self.active_recurrent_implementation = active_implementation
        if active_implementation == "cudnn":
            # Keras' jit_compile="auto" turns XLA on when it sees a GPU; CudnnRNNV3 has no XLA kernel.
            self.supports_jit = False

    def call(self, inputs, training=None, mask=None):
        if self.active_recurrent_implementation == "scan":
            return super().call(inputs, training=training, mask=mask)
        visual = keras.ops.convert_to_tensor(inputs["visual"], self.input["visual"].dtype)
        caption_in = keras.ops.convert_to_tensor(inputs["caption_in"], "int32")
        return self._teacher_forced(visual, caption_in, training=training, fused=True)

    def _teacher_forced(self, visual, caption_in, training=None, fused=False):
        """Logits `[batch, time, V]` for `caption_in` given the visual input: through the scan
        (`fused=False`; with Keras inputs this builds the functional graph) or through
        `keras.layers.LSTM` (`fused=True`), with the same layers and variables."""
        features = self._encode_per_caption(visual, caption_in)  # [batch, F]
        image = self.image_dropout(self._visual_context(features), training=training)  # [batch, D_v]
        x = self.word_embedding(caption_in)  # [batch, time, E]
        x = self.word_dropout(x, training=training)
        for index, recurrence in enumerate(self.recurrences):
            sees_image = index + 1 == self.image_layer
            if fused:
                x = self._fused_layer(index, x, image if sees_image else None)  # [batch, time, H]
            else:
                projection = self.input_projections[index](x)  # [batch, time, projection_units]
                if sees_image:
                    image_projection = self.image_projection(image)  # [batch, projection_units]
                    projection = self.add_image(projection, image_projection)
                x = recurrence(projection)  # [batch, time, H]
            x = self.hidden_dropouts[index](x, training=training)
        scores = self.output_projection(x)  # [batch, time, V]
        if self.visual_word_scores is not None:
            scores = self.add_visual_word_scores(scores, self.visual_word_scores(image))
        return self.output_cast(scores)  # [batch, time, V]

    def _fused_layer(self, index, x, image=None):
        """Recurrent layer `index` as one `keras.layers.LSTM` over `x [batch, time, D]`."""
        kernel = self.input_projections[index].kernel  # W_x [D, 4H]
        if image is not None:
            # W·[x_t; v] = W_x·x_t + W_v·v: cuDNN has no per-caption input term, so v joins every
            # step's input and W_v the kernel; W_v·v is then computed T times, inside the one
            # input GEMM cuDNN runs for all steps.
            steps = keras.ops.shape(x)[1]
            image = keras.ops.repeat(keras.ops.expand_dims(keras.ops.cast(image, x.dtype), 1),
                                     steps, axis=1)  # [batch, time, D_v]
            x = keras.ops.concatenate([x, image], axis=-1)  # [batch, time, D + D_v]
            kernel = keras.ops.concatenate([kernel, self.image_projection.kernel], axis=0)
        recurrence = self.recurrences[index]  # U [H, 4H], b [4H]
        return self.fused_lstms[index](x, kernel, recurrence.recurrent_kernel, recurrence.bias)

    def _visual_context(self, features):
        return self.image_embedding(features) if self.image_embedding else features

    def initial_state(self, context):
        """`{"h1", "c1"[, "h2", "c2"], "image_projection"[, "visual_word_scores"]}`; c* only for
        LSTMs.

        `image_projection` [B, 4H or H] is W_v·v for the layer that sees the image, computed
        here once so that `step` only projects the new word; likewise the late-fusion word scores
        [B, V] of `visual_word_scores=True`.
        """
        batch_size = keras.ops.shape(context)[0]
        state = {}
        for index, recurrence in enumerate(self.recurrences):
            for key, value in recurrence.get_initial_state(batch_size).items():
                state[f"{key}{index + 1}"] = value
        state["image_projection"] = self.image_projection(context)
        if self.visual_word_scores is not None:
            state["visual_word_scores"] = keras.ops.cast(self.visual_word_scores(context), "float32")
        return state

    def step(self, token_ids, state):
        x = self.word_embedding(token_ids)  # [batch, E]
        new_state = {key: state[key] for key in ("image_projection", "visual_word_scores") if key in state}
        for index, recurrence in enumerate(self.recurrences):
            projection = self.input_projections[index](x)  # [batch, projection_units]
            if index + 1 == self.image_layer:
                projection = projection + keras.ops.cast(state["image_projection"],
                                                         projection.dtype)
            layer_state = {key: state[f"{key}{index + 1}"] for key in recurrence.state_keys}
            x, layer_state = recurrence.step(projection, layer_state)
            for key, value in layer_state.items():
                new_state[f"{key}{index + 1}"] = value
        logits = self._logits(x)
        if "visual_word_scores" in state:
            logits = logits + state["visual_word_scores"]
        return logits, new_state

    def get_config(self):
        config = super().get_config()
        config.update({
            "variant": self.variant,
            "cell": self.cell,
            "hidden_units": self.hidden_units,
            "embedding_dim": self.embedding_dim,
            "image_embedding_dim": self.image_embedding_dim,
            "recurrent_implementation": self.recurrent_implementation,
            "visual_word_scores": self.visual_word_scores is not None,
        })
        return config
