"""Hermetic SavedModel export of a VQA model: (image bytes, question) -> top-k answers.

    python -m vcaption.export --run runs/vqa_lstm_cnn [--top-k 5] [--output saved_models] [--name NAME]

(`vcaption.vqa.task.VQATask.export_run`: the run's model.keras and its copy of the vocabulary and
answers) writes `<output>/<name>/<version>/` through `vcaption.runtime.export_core.save_versioned`
(atomic, versioned, warmup request, op check), with one signature:

* `serving_default`: inputs `image_bytes` string[batch] and `question` string[batch];
  outputs `answers` string[batch, k] and `probabilities` float32[batch, k].

Inside the graph: the image goes through `vcaption.images.preprocess_image` (header checks before
decoding, resize to S×S), the question through `vcaption.text.tokenize` and the `Vocabulary`
lookup (unknown words -> `<unk>`) — the same functions the Beam job used to write the training
records — then the model; `probabilities` are the softmax over the K answers, top k first, and
`answers` their strings from `answers.txt`, which travels as an asset (a `tf.lookup` table
initialised from the file), as does `vocab.txt`. Only variables and lookup tables are tracked, so
loading needs `tensorflow` alone (DESIGN rule 5). Mismatched batch sizes of the two inputs are an
InvalidArgumentError naming them.
"""

from __future__ import annotations

import tensorflow as tf

from vcaption import images, text
from vcaption.runtime import export_core

DEFAULT_TOP_K = 5
WARMUP_QUESTION = "what color is the circle?"


class VQAServingModule(tf.Module):
    """A VQA model wrapped for serving: raw image bytes and question strings in, answers out.

    Args:
        model: a `vcaption.vqa.model.VQAModel` with an image encoder.
        vocabulary: the question `text.Vocabulary`, built from its file (an asset).
        answers_path: answers.txt, one answer per line in answer-id order.
        image_size: side S the model's encoder expects.
        top_k: answers returned per question (at most K).
        max_pixels: images whose header claims more pixels are refused before decoding.

    Example:
    ```python
    module = VQAServingModule(model, text.Vocabulary("vocab.txt"), "answers.txt", 64)
    out = module.serve(tf.constant([jpeg]), tf.constant(["what color is the circle?"]))
    ```
    """

    def __init__(self, model, vocabulary: text.Vocabulary, answers_path: str, image_size: int,
                 top_k: int = DEFAULT_TOP_K, max_pixels: int = images.DEFAULT_MAX_PIXELS):
        super().__init__(name="vqa")
        if not getattr(model, "image", False) or model.encoder_name == "features":
            raise ValueError("only a VQA model with an image encoder can be served from image bytes")
        if vocabulary.size != model.vocab_size:
            raise ValueError(f"vocabulary has {vocabulary.size} tokens, the model embeds {model.vocab_size}")
        with tf.io.gfile.GFile(answers_path) as f:
            num_answers = len(f.read().splitlines())
        if num_answers != model.num_answers:
            raise ValueError(f"{answers_path} has {num_answers} answers, "
                             f"the model predicts {model.num_answers}")
        if not 1 <= top_k <= num_answers:
            raise ValueError(f"need 1 <= top_k <= {num_answers}, got {top_k}")
        self.vocabulary = vocabulary
        self.answer_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(answers_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                          tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
            default_value="")
        self.model_variables = list(model.variables)  # variables, not the Keras model
        self.top_k = top_k

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                      tf.TensorSpec([None], tf.string, name="question")])
        def serve(image_bytes, question):
            check = tf.debugging.assert_equal(
                tf.shape(image_bytes), tf.shape(question),
                message="image_bytes and question must have the same batch size")
            with tf.control_dependencies([check]):
                image_bytes = tf.identity(image_bytes)
            pixels = images.preprocess_images(image_bytes, image_size, max_pixels)
            ids = vocabulary.lookup(text.tokenize(question)).to_tensor(default_value=text.PAD_ID)
            # One trailing <pad> (masked) so that a question with no words still has a time axis.
            ids = tf.pad(tf.cast(ids, tf.int32), [[0, 0], [0, 1]])  # [batch, words + 1]
            logits = model({"visual": tf.cast(pixels, tf.float32), "question": ids}, training=False)
            probabilities = tf.nn.softmax(logits, axis=-1)  # [batch, K]
            top = tf.math.top_k(probabilities, k=top_k)  # [batch, k]
            return {"answers": self.answer_table.lookup(tf.cast(top.indices, tf.int64)),
                    "probabilities": top.values}

        self.serve = serve

    def signatures(self) -> dict:
        return {"serving_default": self.serve.get_concrete_function()}


def export_vqa(model, vocab_path: str, answers_path: str, export_dir_root: str, name: str,
               image_size: int, top_k: int = DEFAULT_TOP_K,
               max_pixels: int = images.DEFAULT_MAX_PIXELS) -> str:
    """Exports `model` as `<export_dir_root>/<name>/<version>/`; returns that path.

    Args:
        model: a trained `VQAModel` with an image encoder.
        vocab_path: the records' vocab.txt (copied in as an asset).
        answers_path: the records' answers.txt (copied in as an asset).
        export_dir_root: root of the versioned exports.
        name: the model name (TF Serving's).
        image_size: side S the model was trained on.
        top_k: answers per question (clamped to K).
        max_pixels: refuse images whose header claims more pixels.

    Example:
    ```python
    path = export_vqa(model, "records/vocab.txt", "records/answers.txt", "saved_models", "vqa", 64)
    out = tf.saved_model.load(path).signatures["serving_default"](
        image_bytes=tf.constant([jpeg]), question=tf.constant(["how many shapes are there?"]))
    ```
    """
    module = VQAServingModule(model, text.Vocabulary(vocab_path), answers_path, image_size,
                              min(top_k, model.num_answers), max_pixels)
    warmup = {"image_bytes": [export_core.warmup_jpeg()], "question": [WARMUP_QUESTION]}
    return export_core.save_versioned(module, module.signatures(), export_dir_root, name, warmup)
