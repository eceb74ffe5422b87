"""The region-embedding ranker of Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments" (§3.1).

Image regions and sentence words are embedded in one h-dimensional space:

* regions (Eq. 1): v_i = W_m · CNN(I_{b_i}) + b_m for every box b_i of the image (the whole image is
  region 0). Two ways to get CNN(I_b):
  - `region_features="crop"` (the paper): crop every box out of the pixels, resize it to
    `crop_size`, and run the CNN on each crop;
  - `region_features="shared_map"` (faster): run the CNN once on the whole image and pool each box
    out of the shared feature map with `tf.image.crop_and_resize` (RoI pooling), removing the
    per-region forward passes the paper names as its own inefficiency.
  With `box_geometry=True` the normalised box (ymin, xmin, ymax, xmax, area) is appended to
  CNN(I_b) before W_m: a crop alone cannot tell "in the top left" from "at the bottom".
* words (Eqs. 2-6), a bidirectional RNN with ReLU units over word vectors learned from scratch:
      x_t = W_w 𝕀_t                           (2)
      e_t = f(W_e x_t + b_e)                   (3)
      h^f_t = f(e_t + W_f h^f_{t-1} + b_f)     (4)
      h^b_t = f(e_t + W_b h^b_{t+1} + b_b)     (5)
      s_t = f(W_d (h^f_t + h^b_t) + b_d)       (6)
* image-sentence score (Eq. 8): S_kl = Σ_{t ∈ g_l} max_{i ∈ g_k} v_iᵀ s_t, or with `score="eq7"`
  the DeFrag-style score the paper compares it with (Eq. 7, Karpathy et al. 2014):
      S_kl = Σ_{t ∈ g_l} Σ_{i ∈ g_k} max(0, v_iᵀ s_t)
  every region with a positive dot product counts, not only the best one. g_k is the set of the
  image's *distinct* regions: a sum (unlike a max) would count a repeated box once per copy, so
  the model zeroes the vectors of repeated boxes (`DistinctRegions`) and they add max(0, 0) = 0.
* loss (Eq. 9), over all pairs of a minibatch of matching (image k, sentence k):
      C = Σ_k [ Σ_l max(0, S_kl - S_kk + 1) + Σ_l max(0, S_lk - S_kk + 1) ]
  or, with `hardest_negative=True` (Faghri et al., VSE++), the max over l instead of the sum.
  L2 regularisation comes from the optimizer's weight decay (`train.weight_decay`).

Inputs are `{"image": uint8 [B, S, S, 3], "boxes": float32 [B, R, 4], "words": int32 [B, T]}`:
boxes are normalised (ymin, xmin, ymax, xmax), region 0 the whole image [0, 0, 1, 1]; images with
fewer than R regions repeat the whole-image box, which changes no max over regions. Words are
vocabulary ids without <start>/<end>, 0-padded. Outputs `{"regions": v [B, R, h], "words": s [B, T, h]}`.

Example:
```python
model = RegionRanker(vocab_size=60, hidden_units=128, image_size=64)
out = model({"image": images, "boxes": boxes, "words": words})
S = pairwise_scores(out["regions"], out["words"], words)  # [images, sentences]
```
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from vcaption import encoders
from vcaption.layers import Recurrence

REGION_FEATURES = ("crop", "shared_map")
SCORE_NORMALIZATIONS = ("sum", "mean")
SCORES = ("eq8", "eq7")
WHOLE_IMAGE_BOX = (0.0, 0.0, 1.0, 1.0)
BATCHNORM_MOMENTUM = 0.9


def box_geometry(boxes):
    """[..., 4] (ymin, xmin, ymax, xmax) -> [..., 5] with the box area appended."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return ops.concatenate([boxes, area[..., None]], axis=-1)


@keras.saving.register_keras_serializable(package="vcaption")
class BoxGeometry(keras.layers.Layer):
    """[B, R, 4] boxes -> [B, R, 5] (ymin, xmin, ymax, xmax, area): where a region is."""

    def call(self, boxes):
        return box_geometry(boxes)

    def compute_output_shape(self, boxes_shape):
        return tuple(boxes_shape[:-1]) + (5,)


@keras.saving.register_keras_serializable(package="vcaption")
class CropBoxes(keras.layers.Layer):
    """Crops every box of every image and resizes it: [B, H, W, C], [B, R, 4] -> [B * R, c, c, C].

    The same op serves both region paths: on pixels (crop-and-encode) and on a feature map
    (RoI pooling by bilinear `crop_and_resize`).

    Args:
        crop_size: side c of each crop.
    """

    def __init__(self, crop_size, **kwargs):
        super().__init__(**kwargs)
        self.crop_size = int(crop_size)

    def call(self, images, boxes):
        images = tf.cast(images, self.compute_dtype)
        batch, regions = tf.shape(boxes)[0], tf.shape(boxes)[1]
        flat = tf.reshape(boxes, [-1, 4])  # [B * R, 4]
        owner = tf.repeat(tf.range(batch), regions)  # [B * R]: the image each box is cut from
        return tf.image.crop_and_resize(images, flat, owner, [self.crop_size, self.crop_size])

    def compute_output_shape(self, images_shape, boxes_shape):
        return (None, self.crop_size, self.crop_size, images_shape[-1])

    def get_config(self):
        return {**super().get_config(), "crop_size": self.crop_size}


@keras.saving.register_keras_serializable(package="vcaption")
class PerRegion(keras.layers.Layer):
    """[B * R, F] back to [B, R, F], with R taken from the boxes tensor."""

    def call(self, flat, boxes):
        return tf.reshape(flat, [tf.shape(boxes)[0], tf.shape(boxes)[1], flat.shape[-1]])

    def compute_output_shape(self, flat_shape, boxes_shape):
        return (boxes_shape[0], boxes_shape[1], flat_shape[-1])


def repeated_boxes(boxes):
    """bool [B, R]: box r of an image repeats one of its boxes 0 .. r-1 (padding)."""
    same = tf.reduce_all(boxes[:, :, tf.newaxis, :] == boxes[:, tf.newaxis, :, :], axis=-1)  # [B, R, R]
    count = tf.shape(boxes)[1]
    earlier = tf.range(count)[tf.newaxis, :] < tf.range(count)[:, tf.newaxis]  # [R, R]: j < i
    return tf.reduce_any(same & earlier[tf.newaxis], axis=2)


@keras.saving.register_keras_serializable(package="vcaption")
class DistinctRegions(keras.layers.Layer):
    """Zeroes the vector of every region whose box repeats an earlier box of its image:
    [B, R, h], [B, R, 4] -> [B, R, h]. Images with fewer than R regions (and serving clients)
    pad with repeated boxes, which Eq. 8's max ignores but Eq. 7's sum would count again."""

    def call(self, regions, boxes):
        return regions * tf.cast(~repeated_boxes(boxes), regions.dtype)[:, :, tf.newaxis]

    def compute_output_shape(self, regions_shape, boxes_shape):
        return regions_shape


@keras.saving.register_keras_serializable(package="vcaption")
class ReverseByLength(keras.layers.Layer):
    """Reverses each sequence within its own length (0-padded ids give the lengths), so that the
    backward RNN of Eq. 5 starts at the last word, not on padding."""

    def call(self, sequence, ids):
        lengths = tf.reduce_sum(tf.cast(ids != 0, tf.int32), axis=1)  # [B]
        return tf.reverse_sequence(sequence, lengths, seq_axis=1, batch_axis=0)

    def compute_output_shape(self, sequence_shape, ids_shape):
        return sequence_shape


def _over_regions(dots, axis: int, score: str):
    """Eq. 8: max_i v_iᵀ s_t; Eq. 7: Σ_i max(0, v_iᵀ s_t) (repeated regions are zero vectors)."""
    if score == "eq7":
        return tf.reduce_sum(tf.nn.relu(dots), axis=axis)
    return tf.reduce_max(dots, axis=axis)


def pairwise_scores(regions, words, word_ids, normalization: str = "sum", score: str = "eq8"):
    """S_kl of Eq. 8 (or Eq. 7) for every image k and sentence l.

    Args:
        regions: v, float [K, R, h].
        words: s, float [L, T, h].
        word_ids: int [L, T]; 0 marks padding (contributes nothing).
        normalization: "sum" (Eq. 8) or "mean" (divided by the sentence length).
        score: "eq8" (max over regions) or "eq7" (sum over regions of the positive dot products).

    Returns:
        float32 [K, L].
    """
    dots = tf.einsum("krh,lth->klrt", regions, words)  # [K, L, R, T]: v_iᵀ s_t
    best = _over_regions(dots, 2, score)  # [K, L, T]
    return _sum_over_words(best, tf.cast(word_ids != 0, best.dtype)[tf.newaxis], normalization)  # [K, L]


def paired_scores(regions, words, word_ids, normalization: str = "sum", score: str = "eq8"):
    """S_kl of Eq. 8 (or Eq. 7) for the pairs (image b, sentence b) of two equally long batches.

    Args:
        regions: v, float [B, R, h].
        words: s, float [B, T, h].
        word_ids: int [B, T]; 0 marks padding (contributes nothing).
        normalization, score: as in `pairwise_scores`.

    Returns:
        float32 [B]: the diagonal of `pairwise_scores`, without computing the rest.
    """
    dots = tf.einsum("brh,bth->brt", regions, words)  # [B, R, T]: v_iᵀ s_t
    best = _over_regions(dots, 1, score)  # [B, T]
    return _sum_over_words(best, tf.cast(word_ids != 0, best.dtype), normalization)  # [B]


def _sum_over_words(best, mask, normalization: str):
    """Σ_t over a sentence's words (padding masked out) of max_i v_iᵀ s_t; "mean" divides by |words|."""
    score = tf.reduce_sum(best * mask, axis=-1)
    if normalization == "mean":
        score = score / tf.maximum(tf.reduce_sum(mask, axis=-1), 1.0)
    return tf.cast(score, tf.float32)


def ranking_loss(scores, margin: float = 1.0, hardest_negative: bool = False):
    """Eq. 9 on a square [B, B] score matrix of matching pairs on the diagonal; mean over k.

    With `hardest_negative`, only the highest-scoring wrong sentence and wrong image of each
    pair count (VSE++) instead of the sum over all of them.
    """
    diagonal = tf.linalg.diag_part(scores)  # [B]: S_kk
    off = 1.0 - tf.eye(tf.shape(scores)[0], dtype=scores.dtype)  # the diagonal is no negative
    wrong_sentences = tf.nn.relu(scores - diagonal[:, None] + margin) * off  # rank sentences l for image k
    wrong_images = tf.nn.relu(scores - diagonal[None, :] + margin) * off  # rank images l for sentence k
    if hardest_negative:
        per_pair = tf.reduce_max(wrong_sentences, axis=1) + tf.reduce_max(wrong_images, axis=0)
    else:
        per_pair = tf.reduce_sum(wrong_sentences, axis=1) + tf.reduce_sum(wrong_images, axis=0)
    return tf.reduce_mean(per_pair)


def fragment_loss(regions, words, word_ids, boxes):
    """DeFrag's fragment alignment objective (Karpathy, Joulin & Fei-Fei 2014, §3.2, without its
    MIL refinement) on a minibatch of matching pairs (image k, sentence k):

        C_F = Σ_{i,t} max(0, 1 - y_it v_iᵀ s_t),  y_it = +1 if region i and word t belong to a
        matching image and sentence, -1 otherwise.

    Eq. 7 alone collapses: its clamp max(0, ·) has no gradient once every v_iᵀ s_t <= 0, and the
    many negative pairs of Eq. 9 push there (here every score was 0 within 20 steps, at learning
    rates 1e-3 and 1e-4, sum or max of hinges) — the PAMI paper notes DeFrag needs "additional
    objectives". Each term keeps the dot products of matching fragments above the clamp. The
    positive and the negative fragment pairs are averaged separately and summed, so the K - 1
    times more negative pairs do not outweigh the positive ones (our choice; DeFrag sums).

    Args:
        regions: v [B, R, h].
        words: s [B, T, h].
        word_ids: int [B, T]; 0 marks padding.
        boxes: [B, R, 4]; regions whose box repeats an earlier one are left out.
    """
    dots = tf.einsum("krh,lth->klrt", regions, words)  # [K, L, R, T]
    batch = tf.shape(dots)[0]
    matching = tf.eye(batch, dtype=dots.dtype)[:, :, tf.newaxis, tf.newaxis]  # [K, L, 1, 1]
    sign = 2.0 * matching - 1.0
    real_region = tf.cast(~repeated_boxes(boxes), dots.dtype)[:, tf.newaxis, :, tf.newaxis]
    real_word = tf.cast(word_ids != 0, dots.dtype)[tf.newaxis, :, tf.newaxis, :]
    mask = real_region * real_word  # [K, L, R, T]
    hinge = tf.nn.relu(1.0 - sign * dots) * mask

    def mean(weight):
        return tf.reduce_sum(hinge * weight) / tf.maximum(tf.reduce_sum(mask * weight), 1.0)

    return mean(matching) + mean(1.0 - matching)


@keras.saving.register_keras_serializable(package="vcaption")
class RegionRanker(keras.Model):
    """Karpathy & Fei-Fei's region/word embedding model (Eqs. 1-9); see the module docstring.

    Args:
        vocab_size: word vocabulary size V (id 0 is padding).
        hidden_units: h, the size of the shared space (and of the BRNN; the paper uses 1000).
        embedding_dim: size of the word vectors x_t (Eq. 2), learned from scratch.
        image_size: side S of the input images.
        region_features: "crop" (crop-and-encode, the paper) or "shared_map" (one CNN pass,
            crop_and_resize on its feature map).
        crop_size: side of each pixel crop ("crop") or of each pooled feature-map cell grid
            ("shared_map").
        feature_dim: size of CNN(I_b) (the small CNN's output).
        filters: channels of the small CNN's blocks.
        box_geometry: append the normalised box and its area to CNN(I_b) before W_m.
        score_normalization: "sum" (Eq. 8) or "mean" over the sentence's words.
        score: "eq8" (S_kl = Σ_t max_i v_iᵀ s_t, the paper's) or "eq7" (DeFrag-style
            Σ_t Σ_i max(0, v_iᵀ s_t)), for training and for scoring.
        margin: the margin of Eq. 9 (1 in the paper).
        fragment_weight: weight of DeFrag's fragment objective (`fragment_loss`) added to Eq. 9;
            0 (Eq. 8's setting) leaves it out. An Eq. 7 model needs it to train at all.
        hardest_negative: VSE++ max-of-hinges instead of the sum over the minibatch.

    Example:
    ```python
    model = RegionRanker(vocab_size=60, hidden_units=128)
    model.compile(optimizer="adam")
    model.fit(dataset)  # elements {"image", "boxes", "words"}; the loss is Eq. 9
    ```

    Reference: Karpathy & Fei-Fei, "Deep Visual-Semantic Alignments for Generating Image
    Descriptions", CVPR 2015 / PAMI 2017, §3.1, Eqs. 1-9.
    """

    def __init__(self, vocab_size, hidden_units=128, embedding_dim=128, image_size=64,
                 region_features="crop", crop_size=32, feature_dim=128, filters=(16, 32, 64),
                 box_geometry=True, score_normalization="sum", margin=1.0, hardest_negative=False,
                 score="eq8", fragment_weight=0.0, **kwargs):
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if region_features not in REGION_FEATURES:
            raise ValueError(f"region_features must be one of {REGION_FEATURES}, got {region_features!r}")
        if score_normalization not in SCORE_NORMALIZATIONS:
            raise ValueError(f"score_normalization must be one of {SCORE_NORMALIZATIONS}, "
                             f"got {score_normalization!r}")
        filters = tuple(int(f) for f in filters)
        image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
        boxes = keras.Input(shape=(None, 4), dtype="float32", name="boxes")
        words = keras.Input(shape=(None,), dtype="int32", name="words")

        # --- regions, Eq. 1 ------------------------------------------------------------------
        if region_features == "crop":
            crops = CropBoxes(crop_size, name="crop_pixels")(image, boxes)  # [B * R, c, c, 3]
            cnn = encoders.build_small_cnn(crop_size, feature_dim, filters=filters, name="region_cnn")
            flat = cnn(crops)  # [B * R, F]
        else:
            trunk = encoders.build_small_cnn(image_size, feature_dim, filters=filters, spatial=True,
                                             name="shared_cnn")
            feature_map = trunk(image)  # [B, g, g, C], one pass per image
            pooled = CropBoxes(crop_size, name="roi_pool")(feature_map, boxes)  # [B * R, c, c, C]
            pooled = keras.layers.Flatten(name="roi_flatten")(pooled)
            flat = keras.layers.Dense(feature_dim, activation="relu", name="roi_features")(pooled)
        # BatchNorm's default momentum (0.99) leaves ~20% of the initial moving statistics after a
        # few hundred steps, and this CNN sees very different statistics than that initialisation:
        # inference-mode embeddings were then far off (val R@1 0.04 vs 0.83 with batch statistics).
        for layer in (cnn if region_features == "crop" else trunk).layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BATCHNORM_MOMENTUM
        per_region = PerRegion(name="per_region")(flat, boxes)  # [B, R, F]
        if box_geometry:
            geometry = BoxGeometry(name="box_geometry")(boxes)  # [B, R, 5]
            per_region = keras.layers.Concatenate(name="region_and_box")([per_region, geometry])
        regions = keras.layers.Dense(hidden_units, name="W_m")(per_region)  # v_i = W_m CNN(I_b) + b_m
        if score == "eq7":
            regions = DistinctRegions(name="distinct_regions")(regions, boxes)

        # --- words, Eqs. 2-6 -----------------------------------------------------------------
        x = keras.layers.Embedding(vocab_size, embedding_dim, name="W_w")(words)  # (2)
        e = keras.layers.Dense(hidden_units, activation="relu", name="W_e")(x)  # (3)
        forward = Recurrence(hidden_units, cell="rnn", activation="relu", name="W_f")(e)  # (4)
        reverse = ReverseByLength(name="reverse")
        backward = reverse(Recurrence(hidden_units, cell="rnn", activation="relu", name="W_b")(
            reverse(e, words)), words)  # (5): right to left within each sentence
        summed = keras.layers.Add(name="h_f_plus_h_b")([forward, backward])
        sentence = keras.layers.Dense(hidden_units, activation="relu", name="W_d")(summed)  # (6)

        super().__init__(inputs={"image": image, "boxes": boxes, "words": words},
                         outputs={"regions": regions, "words": sentence}, **kwargs)
        # The two halves share no layer: retrieval embeds all images and all sentences separately.
        self._image_half = keras.Model({"image": image, "boxes": boxes}, regions, name="image_half")
        self._sentence_half = keras.Model(words, sentence, name="sentence_half")
        self.vocab_size = int(vocab_size)
        self.hidden_units = int(hidden_units)
        self.embedding_dim = int(embedding_dim)
        self.image_size = int(image_size)
        self.region_features = region_features
        self.crop_size = int(crop_size)
        self.feature_dim = int(feature_dim)
        self.filters = filters
        self.box_geometry = bool(box_geometry)
        self.score_normalization = score_normalization
        self.margin = float(margin)
        self.hardest_negative = bool(hardest_negative)
        self.score_function = score
        self.fragment_weight = float(fragment_weight)

    # --- the two embedding halves, for retrieval and alignment ----------------------------
    def embed_regions(self, image, boxes):
        """v: [B, R, h] for images uint8 [B, S, S, 3] and boxes [B, R, 4]."""
        return self._image_half({"image": image, "boxes": boxes}, training=False)

    def embed_words(self, word_ids):
        """s: [L, T, h] for word ids int32 [L, T]."""
        return self._sentence_half(word_ids, training=False)

    def score(self, regions, words, word_ids):
        """S [K, L] (Eq. 8 or 7) from `embed_regions` and `embed_words` outputs."""
        return pairwise_scores(regions, words, word_ids, self.score_normalization, self.score_function)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        scores = pairwise_scores(y_pred["regions"], y_pred["words"], x["words"], self.score_normalization,
                                 self.score_function)
        loss = ranking_loss(scores, self.margin, self.hardest_negative)  # Eq. 9
        if self.fragment_weight:
            loss = loss + self.fragment_weight * fragment_loss(y_pred["regions"], y_pred["words"], x["words"],
                                                                x["boxes"])
        return loss + (ops.sum(self.losses) if self.losses else 0.0)

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable,
            "vocab_size": self.vocab_size, "hidden_units": self.hidden_units,
            "embedding_dim": self.embedding_dim, "image_size": self.image_size,
            "region_features": self.region_features, "crop_size": self.crop_size,
            "feature_dim": self.feature_dim, "filters": list(self.filters),
            "box_geometry": self.box_geometry, "score_normalization": self.score_normalization,
            "margin": self.margin, "hardest_negative": self.hardest_negative,
            "score": self.score_function, "fragment_weight": self.fragment_weight,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
