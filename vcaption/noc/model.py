"""The Novel Object Captioner (Venugopalan et al., "Captioning Images with Diverse Objects", CVPR
2017), as the lecture's "Diversifying captions" slides draw it.

Three networks with shared parameters, one loss each (slide "Insight 3: jointly train on multiple
sources"):

* the **visual network** (CNN -> Embed): image features -> a score per vocabulary word; its
  *image-specific loss* is a multi-label classifier over the object classes, trained on unpaired
  labelled images (ILSVRC-style), held-out classes included;
* the **language model** (Embed -> LSTM -> W_gloveᵀ): input embedding W_glove and output layer
  W_gloveᵀ are one tied matrix, initialised from word embeddings ("Insight 2: capture semantic
  similarity of words"); its *text-specific loss* is next-word cross-entropy on unpaired text;
* the **caption model**: the element-wise sum of the visual network's word scores and the language
  model's logits, then a softmax ("Combine to form a caption model: elementwise sum"); its
  *image-text loss* is next-word cross-entropy on paired image-caption data.

Because the caption model only *adds* the visual scores to the language model's, a class the
visual network recognises and the language model can place in a sentence can be named though no
paired caption ever did: the language model gives every shape word a similar logit where a shape
belongs (their tied embeddings are close), and the visual scores pick the one in the image.

One extension, `image_in_language_model` (off by default and in the `noc` preset): the image also
enters the language model's second LSTM layer on paired batches, as in LRCN-2f (layer 1 sees only
words); text batches have no image and skip that term. Measured on the NOC shapes world (README,
"Novel object captioning"), it captions the seen objects far better (CIDEr-D 3.19 against 1.73
for LRCN-2f on the images without held-out objects) but never names a held-out object (F1 0):
an image-conditioned language model learns from the paired data that no image is ever a star,
and the visual scores do not overturn it. The paper's blind language model
(`image_in_language_model=False`) cannot learn that, and names "star" with precision 0.91.
"""

from __future__ import annotations

import keras
from keras import ops

from vcaption.layers import BroadcastTime, CaptionerBase, Recurrence

OBJECTIVES = ("image", "text", "caption")


@keras.saving.register_keras_serializable(package="vcaption")
class WordBias(keras.layers.Layer):
    """Adds a learned bias per vocabulary word: the output layer's b beside the tied W_gloveᵀ."""

    def __init__(self, vocab_size, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")

    def call(self, logits):
        return logits + ops.cast(self.bias, logits.dtype)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}


@keras.saving.register_keras_serializable(package="vcaption")
class NOCCaptioner(CaptionerBase):
    """The Novel Object Captioner: visual word scores + tied-embedding LSTM language model.

    Args:
        vocab_size: V, the captions' vocabulary plus the words only the unpaired text has.
        class_word_ids: the vocabulary ids of the object-class words, in the order of the
            image-specific loss's labels (`noc.data.labelled_images`).
        hidden_units: H of both LSTM layers.
        embedding_dim: width of W_glove (set the rows with `set_word_embeddings`).
        image_embedding_dim: the image embedding the language model sees
            (`image_in_language_model`).
        image_in_language_model: feed the image to LSTM layer 2 as well (see the module docstring).
        encoder, image_size, feature_dim, encoder_weights, encoder_trainable: the visual
            encoder (`vcaption.encoders`).
        dropout: on the word embeddings.
        dtype: dtype policy; logits are float32.

    Example:
    ```python
    model = NOCCaptioner(vocab_size=60, class_word_ids=[10, 11], encoder="small_cnn", image_size=64)
    model.set_word_embeddings(matrix)  # [60, embedding_dim], e.g. from noc.embeddings
    logits = model({"visual": images, "caption_in": caption_in})  # [batch, time, 60]
    ```
    """

    def __init__(self, vocab_size, class_word_ids=(), hidden_units=256, embedding_dim=64,
                 image_embedding_dim=128, image_in_language_model=False, encoder="small_cnn",
                 image_size=64, feature_dim=None, encoder_weights=None, encoder_trainable=True,
                 dropout=0.0, dtype=None, **kwargs):
        visual, caption_in, image_size = self._build_visual_input(
            encoder, image_size, feature_dim, encoder_weights, encoder_trainable, dtype)
        # Visual network: CNN -> Embed, a score per vocabulary word.
        self.visual_words = keras.layers.Dense(vocab_size, dtype=dtype, name="visual_word_scores")
        # Language model: W_glove in, W_gloveᵀ out (one matrix), two LSTM layers.
        self.word_embedding = keras.layers.ReversibleEmbedding(vocab_size, embedding_dim, tie_weights=True,
                                                               dtype=dtype, name="word_embedding")
        self.word_dropout = keras.layers.Dropout(dropout, name="word_dropout")
        self.recurrences, self.input_projections = [], []
        for index in range(2):
            recurrence = Recurrence(hidden_units, cell="lstm", dtype=dtype, name=f"recurrence_{index + 1}")
            self.recurrences.append(recurrence)
            self.input_projections.append(keras.layers.Dense(
                recurrence.projection_units, use_bias=False, dtype=dtype, name=f"input_projection_{index + 1}"))
        self.image_embedding = self.image_projection = None
        if image_in_language_model:
            self.image_embedding = keras.layers.Dense(image_embedding_dim, dtype=dtype, name="image_embedding")
            self.image_projection = keras.layers.Dense(self.recurrences[1].projection_units, use_bias=False,
                                                       dtype=dtype, name="image_projection")
        self.add_image = BroadcastTime(name="add_image_2")
        self.add_visual_scores = BroadcastTime(name="add_visual_scores")
        # h -> the embedding space, where W_gloveᵀ scores every word.
        self.to_embedding = keras.layers.Dense(embedding_dim, dtype=dtype, name="to_embedding")
        self.word_bias = WordBias(vocab_size, dtype=dtype, name="word_bias")
        self.output_cast = keras.layers.Activation("linear", dtype="float32", name="logits_float32")

        features = self._encode_per_caption(visual, caption_in)  # [batch, F]
        logits = self.caption_logits(features, caption_in)  # [batch, time, V]
        self._finish_init(visual, caption_in, logits, vocab_size=vocab_size, encoder=encoder,
                          image_size=image_size, feature_dim=feature_dim, encoder_weights=encoder_weights,
                          encoder_trainable=encoder_trainable, dropout=dropout, dtype=dtype, **kwargs)
        self.class_word_ids = [int(i) for i in class_word_ids]
        self.hidden_units = int(hidden_units)
        self.embedding_dim = int(embedding_dim)
        self.image_embedding_dim = int(image_embedding_dim)
        self.image_in_language_model = bool(image_in_language_model)
        # Which losses `train_step` sums (the task sets them per training phase; not saved).
        self.objectives = OBJECTIVES
        # The logged means of the total and of each loss (custom `train_step`: no compiled loss).
        self.loss_trackers = {name: keras.metrics.Mean(name=name)
                              for name in ("loss", *(f"{o}_loss" for o in OBJECTIVES))}

    # --- the three networks ---------------------------------------------------------------
    def _image_term(self, features):
        """W_v·embed(v) for LSTM layer 2, or None (blind language model)."""
        if self.image_embedding is None:
            return None
        return self.image_projection(self.image_embedding(features))  # [batch, 4H]

    def language_logits(self, caption_in, image_term=None, training=None):
        """The language model's logits `[batch, time, V]` (W_gloveᵀ·to_embedding(h) + b); with
        `image_term` (`_image_term`) LSTM layer 2 sees the image, without it the text alone."""
        x = self.word_dropout(self.word_embedding(caption_in), training=training)  # [batch, time, E]
        for index, recurrence in enumerate(self.recurrences):
            projection = self.input_projections[index](x)
            if index == 1 and image_term is not None:
                projection = self.add_image(projection, image_term)
            x = recurrence(projection)  # [batch, time, H]
        return self._word_logits(x)

    def _word_logits(self, hidden):
        return self.output_cast(self.word_bias(self.word_embedding(self.to_embedding(hidden), reverse=True)))

    def visual_scores(self, features):
        """The visual network's score per vocabulary word `[batch, V]` (float32)."""
        return self.output_cast(self.visual_words(features))

    def caption_logits(self, features, caption_in, training=None):
        """The caption model: language logits + visual word scores, at every step `[batch, time, V]`."""
        language = self.language_logits(caption_in, self._image_term(features), training=training)
        return self.add_visual_scores(language, self.visual_scores(features))

    def set_word_embeddings(self, matrix) -> None:
        """Initialises W_glove (and so W_gloveᵀ) from `matrix` [V, embedding_dim]."""
        self.word_embedding.embeddings.assign(ops.cast(matrix, self.word_embedding.embeddings.dtype))

    # --- decoding-step API (vcaption.decoding, exports) ------------------------------------
    def initial_state(self, context):
        """`{"h1", "c1", "h2", "c2", "visual_scores"[, "image_projection"]}`: the visual network's
        word scores and the image term are computed once per image."""
        batch_size = ops.shape(context)[0]
        state = {}
        for index, recurrence in enumerate(self.recurrences):
            for key, value in recurrence.get_initial_state(batch_size).items():
                state[f"{key}{index + 1}"] = value
        state["visual_scores"] = self.visual_scores(context)
        image_term = self._image_term(context)
        if image_term is not None:
            state["image_projection"] = image_term
        return state

    def step(self, token_ids, state):
        x = self.word_embedding(token_ids)  # [batch, E]
        new_state = {k: state[k] for k in ("visual_scores", "image_projection") if k in state}
        for index, recurrence in enumerate(self.recurrences):
            projection = self.input_projections[index](x)
            if index == 1 and "image_projection" in state:
                projection = projection + ops.cast(state["image_projection"], projection.dtype)
            layer_state = {key: state[f"{key}{index + 1}"] for key in recurrence.state_keys}
            x, layer_state = recurrence.step(projection, layer_state)
            for key, value in layer_state.items():
                new_state[f"{key}{index + 1}"] = value
        return self._word_logits(x) + state["visual_scores"], new_state

    # --- joint training (Insight 3) -------------------------------------------------------
    def losses_of(self, batch: dict, training: bool = True) -> dict:
        """The three losses of one mixed batch (`noc.data.joint_dataset`): "caption" (image-text,
        paired captions), "text" (text-specific, unpaired sentences), "image" (image-specific,
        unpaired labelled images; sigmoid cross-entropy of each class word, summed over the classes)."""
        from vcaption.losses import masked_caption_loss

        losses = {}
        if "caption" in self.objectives:
            # The encoder's batch normalisation learns only when told it is training.
            features = self.repeat_per_caption(self.encoder(batch["visual"], training=training), batch["caption_in"])
            logits = self.caption_logits(features, batch["caption_in"], training=training)
            losses["caption"] = masked_caption_loss(batch["caption_out"], logits)
        if "text" in self.objectives:
            losses["text"] = masked_caption_loss(batch["text_out"],
                                                 self.language_logits(batch["text_in"], training=training))
        if "image" in self.objectives:
            scores = ops.take(self.visual_scores(self.encoder(batch["labelled_images"], training=training)),
                              self.class_word_ids, axis=1)  # [batch, classes]
            # Summed over an image's labels, averaged over the images: the multi-label loss
            # as NOC trained it (Caffe's SigmoidCrossEntropyLoss divides by the batch size,
            # not by batch x labels). Averaged over the labels too, each class's gradient is
            # 1/len(classes) of a caption word's, and the held-out words' visual scores, which
            # only this loss raises, stay too low to outweigh the language model's prior.
            losses["image"] = ops.mean(ops.sum(ops.binary_crossentropy(  # element-wise, [images, classes]
                ops.cast(batch["labels"], "float32"), scores, from_logits=True), axis=-1))
        return losses

    def train_step(self, data):
        import tensorflow as tf

        batch = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            losses = self.losses_of(batch, training=True)
            total = ops.sum(ops.stack(list(losses.values())))
        variables = self.trainable_variables
        gradients = tape.gradient(total, variables)
        # A phase without some objective leaves its networks' variables without gradient.
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        values = {"loss": total, **{f"{name}_loss": value for name, value in losses.items()}}
        for name, value in values.items():
            self.loss_trackers[name].update_state(value)
        return {name: self.loss_trackers[name].result() for name in values}

    @property
    def metrics(self):
        # Keras resets these at every epoch and reads them for the logs.
        return list(getattr(self, "loss_trackers", {}).values())

    def get_config(self):
        config = super().get_config()
        config.update({
            "class_word_ids": list(self.class_word_ids),
            "hidden_units": self.hidden_units,
            "embedding_dim": self.embedding_dim,
            "image_embedding_dim": self.image_embedding_dim,
            "image_in_language_model": self.image_in_language_model,
        })
        return config
