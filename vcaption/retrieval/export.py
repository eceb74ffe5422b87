"""Export a trained `RegionRanker` as a hermetic SavedModel (via `export_core.save_versioned`).

    python -m vcaption.export --run runs/karpathy_ranker [--output saved_models] [--name karpathy_ranker]

(`vcaption.retrieval.task.RankerTask.export_run`: the run directory alone gives the model, its
vocabulary and `data.max_length`), or at the end of training with `--set export.saved_models_dir=DIR`.

Signatures (inputs -> outputs); images are encoded bytes (JPEG/PNG/GIF/BMP) decoded in-graph by
`images.preprocess_image` (decompression-bomb checks included); `boxes` are the client's region
boxes, normalised (ymin, xmin, ymax, xmax) — the whole image is prepended in-graph as region 0:

- `embed_image(image_bytes [B], boxes [B, R, 4])` -> `regions` [B, R + 1, h], `boxes` [B, R + 1, 4];
- `embed_sentence(sentences [B])` -> `words` [B, T, h], `tokens` [B, T] (padded with ""),
  `lengths` [B];
- `score(image_bytes [B], boxes [B, R, 4], sentences [B])` -> `scores` [B]: S_kl (Eq. 8) of each
  row's image and sentence. To rank K images against L sentences, send the K·L pairs, or embed
  the images and sentences once and take S_kl = Σ_t max_i v_iᵀ s_t over the first `lengths[l]`
  words (÷ lengths[l] for a ranker trained with `score_normalization="mean"`; for `score="eq7"`,
  Σ_t Σ_i max(0, v_iᵀ s_t) instead, the regions of repeated boxes being zero vectors);
- `align(image_bytes [B], boxes [B, R, 4], sentence [B], beta [B])` -> for each row, `tokens` [B, T]
  (padded with ""), `lengths` [B], `regions` [B, T] (index into the row's boxes with the whole
  image first; -1 past the sentence's end), `boxes` [B, T, 4] (each word's box) and `scores`
  [B, T] (v_{a_j}ᵀ s_j; 0 past the end): the Viterbi solution of the chain MRF (Eqs. 10-12),
  computed in-graph (`vcaption.retrieval.mrf.viterbi_tf`).

Every input and output has the batch on dimension 0, row-for-row, so TF Serving's server-side
batching (`--enable_batching`) may concatenate concurrent requests and split the answers back.
Requests batched together must agree on the other dimensions of their inputs (the number of boxes
R): the stock model server refuses a batch that mixes them (`pad_variable_length_inputs` is off),
so send every request with the same R (pad with repeated boxes). T is the longest sentence of the
batch the request ran in: read `lengths`, not T.

A whole-image embedding (`vcaption.retrieval.vse.VisualSemanticEmbedding`, Kiros et al. / VSE++)
exports through `export_vse` with

- `embed_image(image_bytes [B])` -> `embedding` [B, D] (unit length);
- `embed_sentence(sentences [B])` -> `embedding` [B, D] (unit length), `tokens` [B, T], `lengths` [B];
- `score(image_bytes [B], sentences [B])` -> `scores` [B]: the cosine of each row's pair (the
  `serving_default`). To rank K images against L sentences, embed both once and take the
  [K, L] matrix of dot products.

The vocabulary travels as an asset (`text.Vocabulary` tables); only variables and tables are
tracked, so the export loads with plain TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

from vcaption import images, text
from vcaption.retrieval.mrf import viterbi_tf
from vcaption.retrieval.ranker import WHOLE_IMAGE_BOX, paired_scores
from vcaption.runtime import export_core


def _sentence_ids(vocabulary: text.Vocabulary, sentences, max_length: int):
    """(ids int32 [L, T] 0-padded, tokens ragged [L, (T)]) of the first `max_length` words."""
    tokens = text.tokenize(sentences)[:, :max_length]  # [L, (T)]
    return tf.cast(vocabulary.lookup(tokens), tf.int32).to_tensor(), tokens


def _same_rows(image_bytes, **others) -> list:
    """Assertions that every other input has as many rows (dimension 0) as `image_bytes`."""
    rows = tf.shape(image_bytes)[:1]
    return [tf.debugging.assert_equal(tf.shape(value)[:1], rows,
                                      message=f"{name} must have one row per image of image_bytes")
            for name, value in others.items()]


class RankerServingModule(tf.Module):
    """A `RegionRanker` wrapped for serving (see the module docstring for the signatures).

    Args:
        model: a trained `RegionRanker`.
        vocabulary: `text.Vocabulary` built from the run's vocab.txt.
        max_length: words kept per sentence.
        max_pixels: images whose header claims more pixels are refused before decoding.

    Example:
    ```python
    module = RankerServingModule(model, text.Vocabulary("vocab.txt"))
    module.score(tf.constant([jpeg]), tf.constant([[[0.1, 0.1, 0.5, 0.5]]]), tf.constant(["a red circle"]))
    ```
    """

    def __init__(self, model, vocabulary: text.Vocabulary, max_length: int = 16,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS):
        super().__init__(name="ranker")
        if vocabulary.size != model.vocab_size:
            raise ValueError(f"vocabulary has {vocabulary.size} tokens but the model has {model.vocab_size}")
        self.vocabulary = vocabulary
        self.model_variables = list(model.variables)  # variables, not the Keras model
        image_size = model.image_size
        normalization, score_function = model.score_normalization, model.score_function

        def pixels(image_bytes):
            return images.preprocess_images(image_bytes, image_size, max_pixels)

        def with_whole_image(boxes):
            boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
            whole = tf.tile(tf.constant([[WHOLE_IMAGE_BOX]], tf.float32), [tf.shape(boxes)[0], 1, 1])
            return tf.concat([whole, boxes], axis=1)  # [K, R + 1, 4]

        def regions_of(image_bytes, boxes):
            boxes = with_whole_image(boxes)
            return model._image_half({"image": pixels(image_bytes), "boxes": boxes}, training=False), boxes

        def words_of(sentences):
            ids, tokens = _sentence_ids(vocabulary, sentences, max_length)  # [L, T], 0 = padding
            words = model._sentence_half(ids, training=False)
            return words, ids, tokens

        image_spec = tf.TensorSpec([None], tf.string, name="image_bytes")
        boxes_spec = tf.TensorSpec([None, None, 4], tf.float32, name="boxes")
        sentences_spec = tf.TensorSpec([None], tf.string, name="sentences")

        @tf.function(input_signature=[image_spec, boxes_spec])
        def embed_image(image_bytes, boxes):
            regions, boxes = regions_of(image_bytes, boxes)
            return {"regions": regions, "boxes": boxes}

        @tf.function(input_signature=[sentences_spec])
        def embed_sentence(sentences):
            words, ids, tokens = words_of(sentences)
            return {"words": words, "tokens": tokens.to_tensor(default_value=""),
                    "lengths": tf.cast(tokens.row_lengths(), tf.int32)}

        @tf.function(input_signature=[image_spec, boxes_spec, sentences_spec])
        def score(image_bytes, boxes, sentences):
            with tf.control_dependencies(_same_rows(image_bytes, boxes=boxes, sentences=sentences)):
                image_bytes = tf.identity(image_bytes)
            regions, _ = regions_of(image_bytes, boxes)
            words, ids, _ = words_of(sentences)
            return {"scores": paired_scores(regions, words, ids, normalization, score_function)}  # [B]

        @tf.function(input_signature=[image_spec, boxes_spec,
                                      tf.TensorSpec([None], tf.string, name="sentence"),
                                      tf.TensorSpec([None], tf.float32, name="beta")])
        def align(image_bytes, boxes, sentence, beta):
            checks = _same_rows(image_bytes, boxes=boxes, sentence=sentence, beta=beta)
            checks.append(tf.debugging.assert_non_negative(beta, message="beta must be >= 0"))
            with tf.control_dependencies(checks):
                image_bytes = tf.identity(image_bytes)
            regions, all_boxes = regions_of(image_bytes, boxes)  # [B, M, h], [B, M, 4]
            words, _, tokens = words_of(sentence)  # [B, T, h], ragged [B, (T)]
            lengths = tf.cast(tokens.row_lengths(), tf.int32)  # [B]
            unary = tf.einsum("bth,bmh->btm", words, regions)  # [B, T, M]: v_mᵀ s_t (Eq. 11)
            longest = tf.shape(words)[1]

            def viterbi_row(row):
                row_unary, n, row_beta = row
                # With fewer than 2 words there are no pairwise terms: the path is the argmax (and
                # viterbi_tf's scans cannot stack zero steps of an unknown region count).
                path = tf.cond(n > 1, lambda: viterbi_tf(row_unary[:n], row_beta),
                               lambda: tf.argmax(row_unary[:n], axis=1, output_type=tf.int32))
                return tf.pad(path, [[0, longest - n]], constant_values=-1)  # [T]

            assignment = tf.map_fn(viterbi_row, (unary, lengths, beta),
                                   fn_output_signature=tf.TensorSpec([None], tf.int32))  # [B, T]
            word = assignment >= 0
            index = tf.maximum(assignment, 0)
            picked = tf.gather(unary, index, batch_dims=2)  # [B, T]
            word_boxes = tf.gather(all_boxes, index, batch_dims=1)  # [B, T, 4]
            return {"tokens": tokens.to_tensor(default_value=""), "lengths": lengths,
                    "regions": assignment,
                    "boxes": tf.where(word[:, :, tf.newaxis], word_boxes, 0.0),
                    "scores": tf.where(word, picked, 0.0)}

        self.embed_image, self.embed_sentence, self.score, self.align = embed_image, embed_sentence, score, align

    def signatures(self) -> dict:
        return {"embed_image": self.embed_image.get_concrete_function(),
                "embed_sentence": self.embed_sentence.get_concrete_function(),
                "score": self.score.get_concrete_function(),
                "align": self.align.get_concrete_function(),
                "serving_default": self.score.get_concrete_function()}


class VSEServingModule(tf.Module):
    """A `VisualSemanticEmbedding` wrapped for serving (signatures in the module docstring).

    Args:
        model: a trained `VisualSemanticEmbedding`.
        vocabulary: `text.Vocabulary` built from the run's vocab.txt.
        max_length: words kept per sentence.
        max_pixels: images whose header claims more pixels are refused before decoding.
    """

    def __init__(self, model, vocabulary: text.Vocabulary, max_length: int = 16,
                 max_pixels: int = images.DEFAULT_MAX_PIXELS):
        super().__init__(name="vse")
        if vocabulary.size != model.vocab_size:
            raise ValueError(f"vocabulary has {vocabulary.size} tokens but the model has {model.vocab_size}")
        self.vocabulary = vocabulary
        self.model_variables = list(model.variables)  # variables, not the Keras model
        image_size = model.image_size

        def image_embedding(image_bytes):
            pixels = images.preprocess_images(image_bytes, image_size, max_pixels)
            return model._image_half(pixels, training=False)  # [B, D]

        def sentence_embedding(sentences):
            ids, tokens = _sentence_ids(vocabulary, sentences, max_length)
            # At least one column: a batch of empty sentences embeds as zero vectors (score 0).
            ids = tf.pad(ids, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(ids)[1])]])
            return model._sentence_half(ids, training=False), tokens  # [B, D]

        image_spec = tf.TensorSpec([None], tf.string, name="image_bytes")
        sentences_spec = tf.TensorSpec([None], tf.string, name="sentences")

        @tf.function(input_signature=[image_spec])
        def embed_image(image_bytes):
            return {"embedding": image_embedding(image_bytes)}

        @tf.function(input_signature=[sentences_spec])
        def embed_sentence(sentences):
            embedding, tokens = sentence_embedding(sentences)
            return {"embedding": embedding, "tokens": tokens.to_tensor(default_value=""),
                    "lengths": tf.cast(tokens.row_lengths(), tf.int32)}

        @tf.function(input_signature=[image_spec, sentences_spec])
        def score(image_bytes, sentences):
            with tf.control_dependencies(_same_rows(image_bytes, sentences=sentences)):
                image_bytes = tf.identity(image_bytes)
            sentence, _ = sentence_embedding(sentences)
            return {"scores": tf.reduce_sum(image_embedding(image_bytes) * sentence, axis=-1)}  # [B]

        self.embed_image, self.embed_sentence, self.score = embed_image, embed_sentence, score

    def signatures(self) -> dict:
        return {"embed_image": self.embed_image.get_concrete_function(),
                "embed_sentence": self.embed_sentence.get_concrete_function(),
                "score": self.score.get_concrete_function(),
                "serving_default": self.score.get_concrete_function()}


def export_vse(model, vocab_path: str, export_dir_root: str, name: str, max_length: int = 16) -> str:
    """Saves a `VisualSemanticEmbedding` as `<root>/<name>/<next version>/` with a warmup request;
    returns the path. Arguments as in `export_ranker`."""
    module = VSEServingModule(model, text.Vocabulary(vocab_path), max_length)
    warmup = {"image_bytes": tf.constant([export_core.warmup_jpeg()]),
              "sentences": tf.constant(["a red circle"])}
    return export_core.save_versioned(module, module.signatures(), export_dir_root, name,
                                      warmup_inputs=warmup, warmup_signature="score")


def export_ranker(model, vocab_path: str, export_dir_root: str, name: str, max_length: int = 16) -> str:
    """Saves the ranker as `<root>/<name>/<next version>/` with a warmup request; returns the path.

    Args:
        model: a trained `RegionRanker`.
        vocab_path: the vocab.txt it was trained with (local or gs://).
        export_dir_root: root of `<name>/<version>/`.
        name: the served model name.
        max_length: words kept per sentence (the data's `max_length`).
    """
    module = RankerServingModule(model, text.Vocabulary(vocab_path), max_length)
    warmup = {"image_bytes": tf.constant([export_core.warmup_jpeg()]),
              "boxes": tf.constant([[[0.1, 0.1, 0.5, 0.5]]], tf.float32),
              "sentences": tf.constant(["a red circle"])}
    return export_core.save_versioned(module, module.signatures(), export_dir_root, name,
                                      warmup_inputs=warmup, warmup_signature="score")
