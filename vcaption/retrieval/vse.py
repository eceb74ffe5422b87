"""A whole-image visual-semantic embedding: Kiros et al. (2014) and VSE++ (Faghri et al., 2018).

The lecture's "visual-semantic spaces": one vector per image and one per sentence in a shared
space, compared by cosine similarity — no regions, no words to align (contrast the region ranker
of `vcaption.retrieval.ranker`):

* image: i = W_i · CNN(I), L2-normalised (the papers: VGG fc7 or ResNet; here the small CNN);
* sentence: s = the last hidden state of a GRU (VSE++) or an LSTM (Kiros et al.) over learned word
  vectors, L2-normalised (the papers use it directly; `sentence_projection=True` adds W_s);
* score: s(i, c) = iᵀc, the cosine of the two;
* loss (margin α = 0.2 in both papers) over the minibatch of matching pairs (i_k, c_k):
      sum of hinges (Kiros, "SH"):  Σ_{c'} [α - s(i,c) + s(i,c')]₊ + Σ_{i'} [α - s(i,c) + s(i',c)]₊
      max of hinges (VSE++, "MH"):  max_{c'} [α - s(i,c) + s(i,c')]₊ + max_{i'} [α - s(i,c) + s(i',c)]₊
  This is Eq. 9 of Karpathy & Fei-Fei with another score and margin, so both losses are
  `ranker.ranking_loss` (averaged over the batch; the papers sum, a constant factor).

For retrieval the model offers the ranker's interface (`embed_regions`, `embed_words`, `score`), so
the ranker task, its validation and its test evaluation serve it unchanged: the image is its one
"region" ([B, 1, D]) and the sentence its one "word vector" ([L, 1, D]); `score` is the cosine
matrix. Inputs are the ranker's `{"image": uint8 [B, S, S, 3], "boxes": ..., "words": int32 [B, T]}`
(boxes ignored; words without <start>/<end>, 0-padded).

Example:
```python
model = VisualSemanticEmbedding(vocab_size=60, embedding_dim=256, sentence_cell="gru",
                                hardest_negative=True)          # VSE++ (MH)
out = model({"image": images, "words": words})                # {"image": [B, D], "sentence": [B, D]}
scores = out["image"] @ tf.transpose(out["sentence"])         # cosine similarities [B, B]
```
"""

from __future__ import annotations

import keras
import tensorflow as tf

from vcaption import encoders
from vcaption.retrieval.ranker import BATCHNORM_MOMENTUM, ranking_loss

SENTENCE_CELLS = ("gru", "lstm")


@keras.saving.register_keras_serializable(package="vcaption")
class L2Normalize(keras.layers.Layer):
    """x / ||x||₂ along the last axis (a zero vector stays zero)."""

    def call(self, x):
        return tf.math.l2_normalize(x, axis=-1)


@keras.saving.register_keras_serializable(package="vcaption")
class VisualSemanticEmbedding(keras.Model):
    """Whole-image and sentence embeddings in one cosine space (see the module docstring).

    Args:
        vocab_size: word vocabulary size V (id 0 is padding).
        embedding_dim: D, the size of the joint space (and of the sentence RNN's state).
        word_dim: size of the word vectors, learned from scratch (VSE++: 300).
        image_size: side S of the input images.
        feature_dim: size of CNN(I) (the small CNN's output).
        filters: channels of the small CNN's blocks.
        sentence_cell: "gru" (VSE++) or "lstm" (Kiros et al.).
        sentence_projection: a linear W_s on the RNN's last state before normalising.
        margin: α of the hinge (0.2 in both papers).
        hardest_negative: max of hinges (VSE++ "MH") instead of the sum (Kiros "SH").

    Reference: Kiros, Salakhutdinov & Zemel, "Unifying Visual-Semantic Embeddings with Multimodal
    Neural Language Models" (2014); Faghri, Fleet, Kiros & Fidler, "VSE++: Improving
    Visual-Semantic Embeddings with Hard Negatives" (BMVC 2018), Eqs. 2-3 (SH, MH).
    """

    def __init__(self, vocab_size, embedding_dim=256, word_dim=128, image_size=64, feature_dim=256,
                 filters=(16, 32, 64, 64), sentence_cell="gru", sentence_projection=False, margin=0.2,
                 hardest_negative=True, **kwargs):
        if sentence_cell not in SENTENCE_CELLS:
            raise ValueError(f"sentence_cell must be one of {SENTENCE_CELLS}, got {sentence_cell!r}")
        filters = tuple(int(f) for f in filters)
        image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
        words = keras.Input(shape=(None,), dtype="int32", name="words")

        cnn = encoders.build_small_cnn(image_size, feature_dim, filters=filters, name="image_cnn")
        # As in the ranker: the default momentum leaves inference-mode statistics far from the
        # training ones after the few hundred steps these models train for.
        for layer in cnn.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BATCHNORM_MOMENTUM
        image_vector = L2Normalize(name="image_norm")(
            keras.layers.Dense(embedding_dim, name="W_i")(cnn(image)))

        # mask_zero: the RNN stops at each sentence's last word and returns that state.
        x = keras.layers.Embedding(vocab_size, word_dim, mask_zero=True, name="word_vectors")(words)
        rnn = keras.layers.GRU if sentence_cell == "gru" else keras.layers.LSTM
        state = rnn(embedding_dim, name=f"sentence_{sentence_cell}")(x)  # [B, D]
        if sentence_projection:
            state = keras.layers.Dense(embedding_dim, name="W_s")(state)
        sentence_vector = L2Normalize(name="sentence_norm")(state)

        super().__init__(inputs={"image": image, "words": words},
                         outputs={"image": image_vector, "sentence": sentence_vector}, **kwargs)
        self._image_half = keras.Model(image, image_vector, name="image_half")
        self._sentence_half = keras.Model(words, sentence_vector, name="sentence_half")
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)
        self.word_dim = int(word_dim)
        self.image_size = int(image_size)
        self.feature_dim = int(feature_dim)
        self.filters = filters
        self.sentence_cell = sentence_cell
        self.sentence_projection = bool(sentence_projection)
        self.margin = float(margin)
        self.hardest_negative = bool(hardest_negative)

    def call(self, inputs, training=None, mask=None):
        # The ranker's data carries region boxes too; a whole-image model reads only these two.
        return super().call({"image": inputs["image"], "words": inputs["words"]}, training=training)

    # --- the embeddings, and the ranker's retrieval interface ------------------------------
    def embed_images(self, image):
        """i: [B, D], unit length, for images uint8 [B, S, S, 3]."""
        return self._image_half(image, training=False)

    def embed_sentences(self, word_ids):
        """c: [L, D], unit length, for word ids int32 [L, T] (0-padded)."""
        return self._sentence_half(word_ids, training=False)

    def embed_regions(self, image, boxes=None):
        """The ranker's interface: the whole image as the one region, [B, 1, D]."""
        return self.embed_images(image)[:, tf.newaxis]

    def embed_words(self, word_ids):
        """The ranker's interface: the sentence as one vector, [L, 1, D]."""
        return self.embed_sentences(word_ids)[:, tf.newaxis]

    def score(self, regions, words, word_ids=None):
        """Cosine similarities [K, L] from `embed_regions` [K, 1, D] and `embed_words` [L, 1, D]."""
        return tf.cast(tf.matmul(regions[:, 0], words[:, 0], transpose_b=True), tf.float32)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        scores = tf.matmul(y_pred["image"], y_pred["sentence"], transpose_b=True)  # [B, B]
        loss = ranking_loss(scores, self.margin, self.hardest_negative)  # SH or MH
        return loss + (keras.ops.sum(self.losses) if self.losses else 0.0)

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable, "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim, "word_dim": self.word_dim,
            "image_size": self.image_size, "feature_dim": self.feature_dim,
            "filters": list(self.filters), "sentence_cell": self.sentence_cell,
            "sentence_projection": self.sentence_projection, "margin": self.margin,
            "hardest_negative": self.hardest_negative,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
