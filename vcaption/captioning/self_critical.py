"""Self-critical fine-tuning on CIDEr-D (Rennie et al., "Self-critical Sequence Training for Image
Captioning", CVPR 2017), after maximum-likelihood training.

Why: maximum likelihood teaches a captioner the references' *mixture* of templates, and beam search
then returns the mixture's mode. On the built-in world that mode describes two objects of a
four-object scene (the template of two-object scenes), where three of its five references list all
four: on `test_novel` the maximum-likelihood `lrcn_2f` lost to caption retrieval on three- and
four-object scenes (CIDEr-D 1.86 / 1.64 against 2.13 / 2.44) while beating it 1.6x on one-object
scenes (README, "Evaluation"). Rewarding the sampled captions with the metric itself moves the mode
to the caption the references agree on.

Each step draws `samples` captions per image from the model (temperature 1, `decoding.sample`'s
loop), scores each against the image's references with CIDEr-D (`CiderD`, document frequencies of
the training references), and follows the policy gradient
    ∇L = -(r(w^s) - b) ∇ log p(w^s | I)
with the baseline b the mean reward of the image's other samples (Luo, "A Better Variant of
Self-Critical Sequence Training", 2020) instead of Rennie et al.'s greedy caption: no extra decode,
and each image's samples are judged against each other. log p is recomputed teacher-forced, so the
gradient flows through the same graph as maximum-likelihood training (CNN included).
"""

from __future__ import annotations

import collections
import math
import time
from typing import Iterable, Sequence

import numpy as np
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import decoding, text
from vcaption.captioning import evaluation
from vcaption.config import ExperimentConfig
from vcaption.metrics.caption import ngram_counts
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory

CIDER_N = 4  # n-grams 1..4
CIDER_SIGMA = 6.0  # the Gaussian length penalty's width (CIDEr-D)
WEIGHTS_FILE = "self_critical.weights.h5"
SUMMARY_FILE = "self_critical.json"


class CiderD:
    """CIDEr-D as pycocoevalcap computes it (TF-IDF vectors of 1- to 4-grams, clipped cosine,
    Gaussian length penalty σ = 6 on the bigram count, mean over n and references, × 10), with the
    document frequencies of a fixed corpus instead of the scored set's: a reward must not depend on
    which images share its batch. Given the scored set as corpus it equals pycocoevalcap's
    per-image scores (tests/captioning/test_self_critical.py).

    Args:
        corpus: the reference captions of each corpus image (normalized text, `text.normalize`).

    Example:
        >>> cider = CiderD([["a red circle", "a big red ball"], ["a blue square"]])
        >>> cider.score("a red circle", cider.references(["a red circle", "a big red ball"]))
    """

    def __init__(self, corpus: Iterable[Sequence[str]]):
        self.document_frequency: collections.Counter = collections.Counter()
        images = 0
        for references in corpus:
            images += 1
            self.document_frequency.update({gram for r in references for gram in ngram_counts(r, CIDER_N)})
        if not images:
            raise ValueError("CiderD needs a non-empty corpus")
        self.log_images = math.log(float(images))

    def _vector(self, caption: str):
        vector = [dict() for _ in range(CIDER_N)]
        norm = [0.0] * CIDER_N
        length = 0
        for gram, count in ngram_counts(caption, CIDER_N).items():
            weight = count * (self.log_images - math.log(max(1.0, self.document_frequency[gram])))
            vector[len(gram) - 1][gram] = weight
            norm[len(gram) - 1] += weight * weight
            if len(gram) == 2:  # pycocoevalcap's "length" counts bigrams
                length += count
        return vector, [math.sqrt(n) for n in norm], length

    def references(self, captions: Sequence[str]) -> list:
        """The references of one image, vectorized once for all its candidates."""
        return [self._vector(c) for c in captions]

    def score(self, candidate: str, references: list) -> float:
        """CIDEr-D of `candidate` against `references` (from `self.references`)."""
        vector, norm, length = self._vector(candidate)
        total = 0.0
        for ref_vector, ref_norm, ref_length in references:
            penalty = math.exp(-((length - ref_length) ** 2) / (2 * CIDER_SIGMA ** 2))
            for n in range(CIDER_N):
                value = sum(min(weight, ref_vector[n].get(gram, 0.0)) * ref_vector[n].get(gram, 0.0)
                            for gram, weight in vector[n].items())
                if norm[n] and ref_norm[n]:
                    value /= norm[n] * ref_norm[n]
                total += value * penalty / CIDER_N
        return 10.0 * total / len(references)


def _sampler(model, samples: int, max_length: int):
    @tf.function(reduce_retracing=True)
    def draw(visual, seed):
        state = model.initial_state(model.encode_visual(visual))
        ids, _, _ = decoding.draw_samples(model.step, state, max_length, samples, seed=seed)
        return tf.reshape(ids, [-1, max_length])  # [images * samples, max_length], image-major

    return draw


def _policy_step(model, optimizer, clip_value: float):
    @tf.function(reduce_retracing=True)
    def step(visual, caption_in, targets, advantage):
        with tf.GradientTape() as tape:
            logits = tf.cast(model({"visual": visual, "caption_in": caption_in}, training=True), tf.float32)
            nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
            log_prob = -tf.reduce_sum(nll * tf.cast(targets != text.PAD_ID, tf.float32), axis=1)
            loss = -tf.reduce_mean(advantage * log_prob)
        variables = model.trainable_variables
        gradients = [tf.clip_by_value(g, -clip_value, clip_value) if g is not None else g
                     for g in tape.gradient(loss, variables)]
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    return step


def advantages(rewards: np.ndarray) -> np.ndarray:
    """rewards [images, samples] -> r - (mean reward of the image's other samples), same shape."""
    samples = rewards.shape[1]
    if samples < 2:
        raise ValueError("self-critical training needs at least 2 samples per image for its baseline")
    others = (rewards.sum(axis=1, keepdims=True) - rewards) / (samples - 1)
    return rewards - others


def fine_tune(model, data: PreparedData, cfg: ExperimentConfig, run: RunDirectory, verbose: int = 1) -> dict:
    """`cfg.train.self_critical_steps` self-critical steps on the training split; returns a summary
    (steps, seconds, mean sample CIDEr-D of the first and last 50 steps), or {"skipped": why} under
    a distribution strategy. A finished fine-tuning of this run (its weights and summary in the run
    directory) is loaded instead of redone."""
    import keras

    tcfg = cfg.train
    if run.exists(SUMMARY_FILE) and run.exists(WEIGHTS_FILE):
        model.load_weights(run.file(WEIGHTS_FILE))
        summary = run.read_json(SUMMARY_FILE)
        print(f"self-critical fine-tuning: done before ({summary['steps']} steps), weights loaded")
        return summary
    if tf.distribute.has_strategy():
        # Its loop applies gradients outside `strategy.run`: mirrored variables would diverge.
        # The maximum-likelihood model stays; the run says so rather than failing after training.
        reason = "runs with --strategy default only"
        print(f"self-critical fine-tuning skipped: {reason}")
        return {"skipped": reason}
    started = time.time()
    cider = CiderD(evaluation.training_references(data.directory))
    vocab = data.vocabulary()
    images, samples = tcfg.self_critical_images, tcfg.self_critical_samples
    draw = _sampler(model, samples, cfg.decode.max_length)
    policy_step = _policy_step(model, keras.optimizers.Adam(tcfg.self_critical_learning_rate), tcfg.clip_value)
    dataset = data_lib.make_dataset(data.directory, "train", "caption_eval", batch_size=images,
                                    image_size=cfg.data.image_size, feature_dim=cfg.data.feature_dim,
                                    training=True, seed=tcfg.seed, repeat=True, drop_remainder=True)
    mean_rewards = []
    print(f"self-critical fine-tuning: {tcfg.self_critical_steps} steps of {images} images x {samples} "
          f"samples, CIDEr-D reward")
    for index, batch in enumerate(dataset.take(tcfg.self_critical_steps)):
        ids = draw(batch["visual"], tf.constant([tcfg.seed, index], tf.int64)).numpy()
        captions = text.normalized_captions([c.decode() for c in vocab.decode(ids).numpy()])
        references = text.normalized_caption_lists([[r.decode() for r in refs]
                                                    for refs in batch["references"].to_list()])
        rewards = np.array([[cider.score(captions[i * samples + j], vectors) for j in range(samples)]
                            for i, vectors in enumerate(cider.references(refs) for refs in references)])
        caption_in = np.concatenate([np.full((len(ids), 1), decoding.START_ID, ids.dtype), ids[:, :-1]], axis=1)
        caption_in[ids == text.PAD_ID] = text.PAD_ID
        policy_step(tf.repeat(batch["visual"], samples, axis=0), tf.constant(caption_in, tf.int32),
                    tf.constant(ids, tf.int32), tf.constant(advantages(rewards).reshape(-1), tf.float32))
        mean_rewards.append(float(rewards.mean()))
        if verbose and (index + 1) % 100 == 0:
            print(f"self-critical step {index + 1}/{tcfg.self_critical_steps}: mean sample CIDEr-D "
                  f"{np.mean(mean_rewards[-100:]):.3f} ({time.time() - started:.0f} s)", flush=True)
    summary = {"steps": len(mean_rewards), "images_per_step": images, "samples_per_image": samples,
               "learning_rate": tcfg.self_critical_learning_rate, "seconds": round(time.time() - started, 1),
               "first_50_mean_reward": float(np.mean(mean_rewards[:50])),
               "last_50_mean_reward": float(np.mean(mean_rewards[-50:]))}
    model.save_weights(run.file(WEIGHTS_FILE))
    run.write_json(SUMMARY_FILE, summary)
    return summary
