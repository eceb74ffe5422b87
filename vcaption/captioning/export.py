"""Hermetic SavedModel export of a captioner, with in-graph image decoding and caption decoding.

    python -m vcaption.export --run runs/lrcn_2f [--beam-size K] [--n-best N]
                              [--output saved_models] [--name NAME]

writes `<output>/<name>/<version>/`, a SavedModel that takes encoded image bytes and returns
caption strings and scores (DESIGN rule 5). Versions are integers, never overwritten: the next
version is the largest existing one + 1, written to a hidden temporary directory first and
renamed into place, so TF Serving (which polls `<name>/` for integer directories) never sees a
half-written export.

What the SavedModel holds:

* the model's variables, captured by plain `tf.function`s of a `tf.Module` — no Keras object is
  saved, so loading needs `tensorflow` only (never `keras`, never `vcaption`);
* the vocabulary file as an asset (`assets/vocab.txt`), through the `text.Vocabulary` tables;
* `assets.extra/tf_serving_warmup_requests`: one `PredictionLog` whose `PredictRequest` runs
  `serving_default` on a small generated JPEG, so TF Serving traces the graph before traffic.

Signatures (batch = any size, N = `DecodeConfig.n_best`):

| signature          | inputs                                              | outputs                    |
|--------------------|-----------------------------------------------------|----------------------------|
| `serving_default`  | `image_bytes` string[batch]                         | `captions` string[batch, N], `scores` float32[batch, N] |
| `caption_features` | `features` float32[batch, F]                        | same                       |
| `caption_sample`   | `image_bytes` string[batch], `temperature` float32[batch], `num_samples` int32[batch] | same |

Every input and output has the batch on dimension 0 and outputs are row-for-row with the inputs,
as TF Serving's server-side batching (`--enable_batching`) requires: it concatenates concurrent
requests along dimension 0 and splits the outputs back, and refuses scalar inputs outright.
`export_core.save_versioned` refuses an export whose signatures break that rule.

* `serving_default`: each image goes through `vcaption.images.preprocess_image` (decode, refuse
  non-images / empty strings / images whose header claims more than `max_pixels` pixels with an
  InvalidArgumentError naming the problem, resize to S×S), then the model's encoder, then
  `vcaption.decoding.beam_search` (width `beam_size`, `max_length`, `alpha`). `scores` are the
  beam-search ranking key, log P(Y|I) / lp(Y) with lp(Y) = ((5 + |Y|) / 6) ** alpha and |Y| the
  generated tokens including <end> (alpha = 0: the raw log-probability). Captions are sorted
  best first; a slot the search could not fill has caption "" and score -inf.
* `caption_features`: the same beam search from *encoder outputs*, skipping the CNN: for
  `encoder="features"` the precomputed features (F = `feature_dim`), for image encoders what
  `model.encoder(images)` returns (F = the encoder's output width, e.g. 256 for `small_cnn`).
* `caption_sample`: best-of-N sampling (LRCN §5): `num_samples[b]` captions are drawn for image
  b from softmax(logits / temperature[b]) — `temperature` is a true temperature T (> 1 flattens,
  < 1 sharpens), the convention of `decoding.sample` (LRCN Table 6's T is 1 / temperature) — and the N most likely
  *distinct* samples are returned, scored by their untempered log-likelihood log P(Y|I) (no
  length normalisation). Fewer distinct samples than N (always so when num_samples < N) leave
  slots with caption "" and score -inf. Both take one value per image (a client with one setting
  for all repeats it), so that requests can be batched; `num_samples` is in [1, `MAX_SAMPLES`]
  and `temperature` > 0. Randomness is stateless with a fixed seed: a request run alone is
  reproducible, but an image's samples depend on its row in the batch and on the batch's
  largest `num_samples` — with server-side batching, on the requests it was batched with.

A model with `encoder="features"` has no image path: its `serving_default` is
`caption_features`, and it has neither `caption_sample` nor a warmup file.

Op allowlist: the graph uses core TensorFlow ops only (`text.py` avoids tf-text), so
`SERVING_EXTRA_OPS` — ops outside core TF that the stock TF Serving model server links in
(tf-text) and that an export may use — is empty. `tests/test_export.py` checks every op type.
"""

from __future__ import annotations


import tensorflow as tf

from vcaption import decoding, images, text
from vcaption.config import DecodeConfig
from vcaption.runtime.export_core import save_versioned, warmup_jpeg


# Upper bound on `caption_sample`'s num_samples: the decoding state grows as batch × num_samples.
MAX_SAMPLES = 256
SAMPLE_SEED = (0, 0)

SIGNATURES = ("serving_default", "caption_features", "caption_sample")


def check_decoder(model, vocabulary: text.Vocabulary, decode: DecodeConfig) -> None:
    """Raises ValueError unless the vocabulary matches the model and N-best fits the beam."""
    if vocabulary.size != model.vocab_size:
        raise ValueError(f"vocabulary has {vocabulary.size} tokens but the model predicts "
                         f"{model.vocab_size}")
    if not 1 <= decode.n_best <= decode.beam_size:
        raise ValueError(f"need 1 <= n_best <= beam_size, got {decode}")


class CaptionerServingModule(tf.Module):
    """A captioner wrapped for serving: raw inputs in, caption strings and scores out.

    Only plain TensorFlow objects are tracked — the model's variables (as a list) and the
    `Vocabulary` lookup tables (whose vocabulary file becomes an asset) — and the Keras model is
    reached through closures at tracing time only, so the SavedModel contains traced graphs and
    no Keras or vcaption objects.

    Args:
        model: a captioner with the step API (`CaptionerBase`: `encoder`, `encode_visual`,
            `initial_state_from_features`, `step`, `vocab_size`).
        vocabulary: `text.Vocabulary` built from a file (so that it travels as an asset).
        image_size: side S the model's image encoder expects (ignored for `encoder="features"`).
        decode: beam width, max length, alpha and N (`n_best`) of the returned lists.
        max_pixels: images whose header claims more pixels are refused before decoding.

    Example:
    ```python
    module = CaptionerServingModule(model, text.Vocabulary("vocab.txt"), 64, DecodeConfig())
    out = module.serve(tf.constant([jpeg_bytes]))  # {"captions": [1, 3], "scores": [1, 3]}
    ```
    """

    def __init__(self, model, vocabulary: text.Vocabulary, image_size: int | None,
                 decode: DecodeConfig, max_pixels: int = images.DEFAULT_MAX_PIXELS):
        super().__init__(name="captioner")
        check_decoder(model, vocabulary, decode)
        self.vocabulary = vocabulary
        # Tracking the variables (not the model) keeps Keras out of the object graph.
        self.model_variables = list(model.variables)
        self.image_size = image_size
        n_best, max_length = decode.n_best, decode.max_length
        takes_images = model.encoder_name != "features"
        if takes_images and not image_size:
            raise ValueError("an image encoder needs image_size")
        feature_dim = int(model.encoder.output.shape[-1])

        def to_strings(ids, scores):
            # ids [batch, N, length] -> captions [batch, N]
            batch = tf.shape(ids)[0]
            flat = tf.reshape(ids, [-1, max_length])  # [batch * N, length]
            captions = tf.reshape(vocabulary.decode(flat), [batch, n_best])  # [batch, N]
            return {"captions": captions, "scores": scores}

        def beam(state):
            result = decoding.beam_search(
                model.step, state, model.vocab_size, decode.beam_size, max_length,
                n_best=n_best, alpha=decode.alpha)
            return to_strings(result.ids, result.scores)

        def visual_from_bytes(image_bytes):
            pixels = images.preprocess_images(image_bytes, image_size, max_pixels)
            return tf.cast(pixels, tf.float32)  # [batch, S, S, 3], 0..255 as in training

        bytes_spec = tf.TensorSpec([None], tf.string, name="image_bytes")

        @tf.function(input_signature=[bytes_spec])
        def serve(image_bytes):
            return beam(model.initial_state(model.encode_visual(visual_from_bytes(image_bytes))))

        @tf.function(input_signature=[tf.TensorSpec([None, feature_dim], tf.float32,
                                                    name="features")])
        def caption_features(features):
            return beam(model.initial_state_from_features(features))

        @tf.function(input_signature=[bytes_spec,
                                      tf.TensorSpec([None], tf.float32, name="temperature"),
                                      tf.TensorSpec([None], tf.int32, name="num_samples")])
        def caption_sample(image_bytes, temperature, num_samples):
            checks = [
                tf.debugging.assert_equal(
                    tf.shape(temperature), tf.shape(image_bytes),
                    message="temperature must hold one value per image of image_bytes"),
                tf.debugging.assert_equal(
                    tf.shape(num_samples), tf.shape(image_bytes),
                    message="num_samples must hold one value per image of image_bytes"),
                tf.debugging.assert_positive(temperature, message="temperature must be > 0"),
                tf.debugging.assert_positive(num_samples, message="num_samples must be >= 1"),
                tf.debugging.assert_less_equal(
                    num_samples, MAX_SAMPLES, message=f"num_samples must be <= {MAX_SAMPLES}"),
            ]
            with tf.control_dependencies(checks):
                num_samples, temperature = tf.identity(num_samples), tf.identity(temperature)
            state = model.initial_state(model.encode_visual(visual_from_bytes(image_bytes)))
            result = _best_of_n(model.step, state, max_length, num_samples, temperature, n_best)
            return to_strings(result.ids, result.scores)

        self.serve = serve
        self.caption_features = caption_features
        self.caption_sample = caption_sample
        if not takes_images:
            # Raw bytes mean nothing to a features model: only `caption_features` is served.
            self.serve = self.caption_sample = None

    def signatures(self) -> dict:
        """Concrete functions by signature name (the image ones only for image encoders)."""
        out = {"caption_features": self.caption_features.get_concrete_function()}
        if self.serve is not None:
            out["serving_default"] = self.serve.get_concrete_function()
            out["caption_sample"] = self.caption_sample.get_concrete_function()
        else:
            out["serving_default"] = out["caption_features"]
        return out


def _best_of_n(step_fn, state, max_length, num_samples, temperature, n_best):
    """`decoding.sample` with a per-row, *dynamic* num_samples and temperature
    (int32 / float32 [batch] tensors) -> `DecodeResult`.

    `decoding.sample` takes one Python int for the whole batch. Here every row draws
    S = max(num_samples) samples — the state tiled S times, one sample per tiled row, each row's
    logits divided by its own T — and a row's samples beyond its num_samples are dropped before the
    ranking (drop duplicates, keep the n_best most likely), redone with a dynamic width. When
    every row asks for the same number and temperature, the draws are bit-identical to
    `decoding.sample`'s: the rows are laid out the same way (`tile_state`, example-major) and
    share the stateless per-step seed.
    """
    batch = tf.shape(num_samples)[0]
    width = tf.maximum(tf.reduce_max(num_samples), 1)  # S (an empty batch still has a width)
    tiled = decoding.tile_state(state, width)  # leaves [batch * S, ...]
    row_temperature = tf.repeat(temperature, width)[:, tf.newaxis]  # [batch * S, 1]: row b*S+j has T_b
    draws = decoding.sample(step_fn, tiled, max_length, num_samples=1,
                            temperature=row_temperature, seed=SAMPLE_SEED)
    ids = tf.reshape(draws.ids, [batch, width, max_length])  # [batch, S, length]
    log_probs = tf.reshape(draws.log_probs, [batch, width])  # [batch, S]
    lengths = tf.reshape(draws.lengths, [batch, width])  # [batch, S]

    # Keep the first occurrence of each distinct sample, as `decoding.sample` does.
    same = tf.reduce_all(
        tf.equal(ids[:, :, tf.newaxis, :], ids[:, tf.newaxis, :, :]), axis=-1)  # [batch, S, S]
    earlier = tf.linalg.band_part(tf.ones([width, width], tf.bool), -1, 0)
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(width, dtype=tf.bool)))
    duplicate = tf.reduce_any(tf.logical_and(same, earlier[tf.newaxis]), axis=-1)  # [batch, S]
    # Draws past a row's own num_samples were made only to share the batch's width.
    unasked = tf.range(width)[tf.newaxis, :] >= num_samples[:, tf.newaxis]  # [batch, S]
    neg_inf = tf.constant(-float("inf"))
    key = tf.where(tf.logical_or(duplicate, unasked), neg_inf, log_probs)

    # n_best unfilled columns make top_k valid when num_samples < n_best.
    key = tf.concat([key, tf.fill([batch, n_best], neg_inf)], axis=1)  # [batch, S + N]
    ids = tf.concat([ids, tf.zeros([batch, n_best, max_length], ids.dtype)], axis=1)
    lengths = tf.concat([lengths, tf.zeros([batch, n_best], lengths.dtype)], axis=1)
    top_keys, top_index = tf.math.top_k(key, k=n_best)  # [batch, n]
    filled = top_keys > neg_inf
    ids = tf.gather(ids, top_index, batch_dims=1)  # [batch, n, length]
    return decoding.DecodeResult(
        ids=tf.where(filled[:, :, tf.newaxis], ids, decoding.PAD_ID),
        scores=top_keys,
        log_probs=top_keys,
        lengths=tf.where(filled, tf.gather(lengths, top_index, batch_dims=1), 0))


def export_captioner(model, vocab_path: str, export_dir_root: str, name: str,
                     image_size: int | None, decode: DecodeConfig = DecodeConfig(),
                     max_pixels: int = images.DEFAULT_MAX_PIXELS) -> str:
    """Exports `model` as `<export_dir_root>/<name>/<version>/` and returns that path.

    The version is the largest existing integer version + 1 (1 for the first export); earlier
    versions are never touched. The SavedModel is written to a hidden temporary directory next
    to the versions and renamed into place, so a server polling the directory never loads a
    partial export.

    Args:
        model: a trained captioner (`LRCNCaptioner`, `KarpathyMultimodalRNN`, `MaoMultimodalRNN`).
        vocab_path: the run's `vocab.txt`; copied into the export as an asset.
        export_dir_root: root of the versioned exports (e.g. "saved_models").
        name: model name (the TF Serving model name).
        image_size: side S the model was trained on (None for `encoder="features"`).
        decode: beam width, max length, alpha and N.
        max_pixels: refuse images whose header claims more pixels than this.

    Returns:
        The new version directory.

    Example:
    ```python
    path = export_captioner(model, "data/vocab.txt", "saved_models", "lrcn_2f", 64,
                            DecodeConfig(beam_size=3, n_best=3))
    loaded = tf.saved_model.load(path)
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([jpeg]))
    ```
    """
    module = CaptionerServingModule(model, text.Vocabulary(vocab_path), image_size, decode,
                                    max_pixels)
    warmup = None if model.encoder_name == "features" else {"image_bytes": [warmup_jpeg()]}
    return save_versioned(module, module.signatures(), export_dir_root, name, warmup)


