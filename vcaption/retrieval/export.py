"""Export a trained `RegionRanker` as a hermetic SavedModel (via `export_core.save_versioned`).

    python -m vcaption.export --run runs/karpathy_ranker [--output saved_models] [--name karpathy_ranker]

(`vcaption.retrieval.task.RankerTask.export_run`: the run directory alone gives the model, its
vocabulary and `data.max_length`), or at the end of training with `--set export.saved_models_dir=DIR`.

Signatures (inputs -> outputs); images are encoded bytes (JPEG/PNG/GIF/BMP) decoded in-graph by
`images.preprocess_image` (decompression-bomb checks included); `boxes` are the client's region
boxes, normalised (ymin, xmin, ymax, xmax) — the whole image is prepended in-graph as region 0:

- `embed_image(image_bytes [K], boxes [K, R, 4])` -> `regions` [K, R + 1, h], `boxes` [K, R + 1, 4];
- `embed_sentence(sentences [L])` -> `words` [L, T, h], `tokens` [L, T] (padded with ""),
  `lengths` [L];
- `score(image_bytes [K], boxes [K, R, 4], sentences [L])` -> `scores` [K, L] (Eq. 8);
- `align(image_bytes [], boxes [R, 4], sentence [], beta [])` -> `tokens` [N], `regions` [N] (index
  into `boxes` with the whole image first), `boxes` [N, 4] (each word's box), `scores` [N]
  (v_{a_j}ᵀ s_j): the Viterbi solution of the chain MRF (Eqs. 10-12), computed in-graph
  (`vcaption.retrieval.mrf.viterbi_tf`).

The vocabulary travels as an asset (`text.Vocabulary` tables); only variables and tables are
tracked, so the export loads with plain TensorFlow.
"""

from __future__ import annotations

import tensorflow as tf

from vcaption import images, text
from vcaption.retrieval.mrf import viterbi_tf
from vcaption.retrieval.ranker import WHOLE_IMAGE_BOX, pairwise_scores
from vcaption.runtime import export_core


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
        normalization = model.score_normalization

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
            tokens = text.tokenize(sentences)[:, :max_length]  # [L, (T)]
            ids = tf.cast(vocabulary.lookup(tokens), tf.int32).to_tensor()  # [L, T], 0 = padding
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
            regions, _ = regions_of(image_bytes, boxes)
            words, ids, _ = words_of(sentences)
            return {"scores": pairwise_scores(regions, words, ids, normalization)}

        @tf.function(input_signature=[tf.TensorSpec([], tf.string, name="image_bytes"),
                                      tf.TensorSpec([None, 4], tf.float32, name="boxes"),
                                      tf.TensorSpec([], tf.string, name="sentence"),
                                      tf.TensorSpec([], tf.float32, name="beta")])
        def align(image_bytes, boxes, sentence, beta):
            tf.debugging.assert_non_negative(beta, message="beta must be >= 0")
            regions, all_boxes = regions_of(image_bytes[tf.newaxis], boxes[tf.newaxis])
            words, _, tokens = words_of(sentence[tf.newaxis])
            n = tokens.row_lengths()[0]
            unary = tf.matmul(words[0, :n], regions[0], transpose_b=True)  # [N, M]: v_tᵀ s_j (Eq. 11)
            assignment = tf.cond(n > 0, lambda: viterbi_tf(unary, beta), lambda: tf.zeros([0], tf.int32))
            picked = tf.gather(unary, assignment, batch_dims=1)  # [N]
            return {"tokens": tokens[0], "regions": assignment, "boxes": tf.gather(all_boxes[0], assignment),
                    "scores": picked}

        self.embed_image, self.embed_sentence, self.score, self.align = embed_image, embed_sentence, score, align

    def signatures(self) -> dict:
        return {"embed_image": self.embed_image.get_concrete_function(),
                "embed_sentence": self.embed_sentence.get_concrete_function(),
                "score": self.score.get_concrete_function(),
                "align": self.align.get_concrete_function(),
                "serving_default": self.score.get_concrete_function()}


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
