"""Retrieval by a captioner's own likelihood: the [images × sentences] matrix of log P(S | I).

Mao et al. (m-RNN) and Donahue et al. (LRCN, Tables 4-5) rank images and sentences with the
generative captioner itself, not with a separate embedding. For image i and sentence
S = w_1 .. w_n,

    log P(S | I_i) = Σ_{t=1}^{n+1} log P(w_t | w_<t, I_i)     (w_{n+1} = <end>)

teacher-forced, the same quantity as the captioner's training loss (and its perplexity), for
every pair. Any captioner of `vcaption.captioning` works (LRCN 1u/2u/2f, Karpathy's multimodal
RNN, Mao's m-RNN): the pairs go through the model's own teacher-forced graph, in-graph and
batched — a block of b images with L sentences is one call on b images and b·L caption rows,
and the model's `RepeatPerCaption` runs the CNN once per image, not once per pair.

**Normalisation by the sentence prior.** Some sentences are likely under every image (short,
common ones), and would be retrieved for all of them. Dividing by the sentence's prior probability
P(S) removes that:

    normalised score = log P(S | I) - log P(S)

with log P(S) from the blind language model (the captioner's decoder trained without the image,
`captioning.task`'s "blind" baseline). The prior is one number per sentence, so it changes only
image annotation (ranking sentences for an image); image search (ranking images for a sentence)
is the same under both scores.

What the papers did (the copies under `../shared/papers` are silent on it — the m-RNN one is its
slides, with the retrieval table only; the following is from the full papers and could not be
re-checked against their text offline):
- m-RNN (Mao et al., ICLR 2015, §7 "retrieval"): image retrieval ranks by P(S | I); sentence
  retrieval by P(S | I) / P(S), with P(S) = Σ_I' P(S | I') P(I') over images sampled from the
  training set — the marginal, for which the blind LM's P(S) stands in here. So m-RNN's own
  protocol is "normalised".
- LRCN (Donahue et al., PAMI 2017, §5.1.1, Tables 4-5) says only that the model ranks images and
  captions; it states no normalisation, so its protocol is taken to be the raw log P(S | I).
Both are reported for both models.

Example:
```python
log_p = likelihood_matrix(captioner, images, caption_ids)        # [N, 5N] log P(S_j | I_i)
prior = sentence_log_prior(blind_lm, caption_ids)                # [5N]    log P(S_j)
scores = normalise_by_prior(log_p, prior)                        # [N, 5N]
```
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import text

# Caption rows (image-sentence pairs) per call of the model: bounds the logits [rows, T, V] and the
# recurrent activations, whatever the number of images and sentences.
MAX_ROWS = 2048


def caption_ids_from_words(word_ids: np.ndarray) -> np.ndarray:
    """Word ids [L, T] (0-padded, no <start>/<end>) -> <start> w_1 .. w_n <end> [L, T + 2], 0-padded."""
    word_ids = np.asarray(word_ids, np.int32)
    lengths = np.sum(word_ids != text.PAD_ID, axis=1)
    out = np.zeros((len(word_ids), word_ids.shape[1] + 2), np.int32)
    out[:, 0] = text.START_ID
    for row, n in enumerate(lengths):
        out[row, 1:n + 1] = word_ids[row, :n]
        out[row, n + 1] = text.END_ID
    return out


def log_likelihood_fn(model):
    """A traced function (visual [b, ...], caption_ids int32 [L, T]) -> log P(S_l | I_i) [b, L].

    `caption_ids` are <start> w_1 .. w_n <end>, 0-padded; every one of the b·L pairs is scored
    in one teacher-forced call (rows image-major: the model repeats image i for rows i·L .. i·L+L-1).
    """

    @tf.function(reduce_retracing=True)
    def log_likelihood(visual, caption_ids):
        images = tf.shape(visual)[0]
        sentences = tf.shape(caption_ids)[0]
        caption_in = tf.tile(caption_ids[:, :-1], [images, 1])  # [b·L, T-1]
        targets = tf.tile(caption_ids[:, 1:], [images, 1])  # [b·L, T-1]
        logits = model({"visual": visual, "caption_in": caption_in}, training=False)  # [b·L, T-1, V]
        log_p = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        log_p = tf.reduce_sum(log_p * tf.cast(targets != text.PAD_ID, log_p.dtype), axis=1)  # [b·L]
        return tf.reshape(log_p, [images, sentences])

    return log_likelihood


def likelihood_matrix(model, visual: np.ndarray, caption_ids: np.ndarray, max_rows: int = MAX_ROWS,
                      fn=None) -> np.ndarray:
    """log P(S_j | I_i) for every image i and sentence j: float64 [N, L].

    Args:
        model: a captioner (`CaptionerBase`).
        visual: what the model's "visual" input takes, one row per image: uint8/float images
            [N, S, S, 3] or features [N, F].
        caption_ids: int32 [L, T], <start> w_1 .. w_n <end>, 0-padded (`caption_ids_from_words`).
        max_rows: image-sentence pairs per call (memory bound).
        fn: a `log_likelihood_fn(model)` to reuse (each new one is traced again).
    """
    fn = fn or log_likelihood_fn(model)
    caption_ids = np.asarray(caption_ids, np.int32)
    count = len(caption_ids)
    chunk = min(count, max_rows)  # sentences per call
    images_per_call = max(1, max_rows // chunk)
    out = np.empty((len(visual), count), np.float64)
    for i in range(0, len(visual), images_per_call):
        block = tf.constant(visual[i:i + images_per_call])
        for j in range(0, count, chunk):
            out[i:i + images_per_call, j:j + chunk] = fn(block, tf.constant(caption_ids[j:j + chunk])).numpy()
    return out


def sentence_log_prior(blind_model, caption_ids: np.ndarray, max_rows: int = MAX_ROWS) -> np.ndarray:
    """log P(S_j) under the blind language model (its constant visual input): float64 [L]."""
    blind_input = np.zeros((1, data_lib.BLIND_FEATURE_DIM), np.float32)
    return likelihood_matrix(blind_model, blind_input, caption_ids, max_rows)[0]


def normalise_by_prior(log_likelihoods, log_prior) -> np.ndarray:
    """log P(S_j | I_i) - log P(S_j): [N, L] minus [L] per column."""
    log_likelihoods = np.asarray(log_likelihoods, np.float64)
    log_prior = np.asarray(log_prior, np.float64)
    if log_prior.shape != log_likelihoods.shape[1:]:
        raise ValueError(f"log_prior: one value per sentence ({log_likelihoods.shape[1]}), "
                         f"got shape {log_prior.shape}")
    return log_likelihoods - log_prior[np.newaxis, :]
