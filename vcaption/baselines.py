"""Baselines printed beside every captioner: nearest-neighbour caption retrieval.

(The other baseline, the blind language model, is the same captioner trained on all-zero images;
`vcaption.train` trains it and `vcaption.evaluate` decodes it with `blind=True`.)

Nearest-neighbour retrieval follows Devlin et al., "Exploring Nearest Neighbor Approaches for Image
Captioning" (2015): embed every image with the captioner's own visual encoder, take the k training
images closest in cosine similarity, and return the consensus caption among their captions — the one
with the highest mean n-gram similarity to the others. It shows how much of a score comes from
copying training captions of similar images rather than from composing new ones.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf

from vcaption import data, text
from vcaption.metrics import caption as caption_metrics


def _embed(encoder, dataset) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """(image ids, L2-normalised features [N, F], normalized references) of a caption_eval dataset."""
    ids, features, references = [], [], []
    embed = tf.function(lambda v: encoder(v, training=False), reduce_retracing=True)
    for batch in dataset:
        ids += [i.decode() for i in batch["image_id"].numpy()]
        features.append(np.asarray(embed(batch["visual"]), np.float32))
        references += [[text.normalized_caption(r.decode()) for r in refs] for refs in batch["references"].to_list()]
    features = np.concatenate(features)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return ids, features, references


def _ngrams(caption: str, n_max: int = 2) -> collections.Counter:
    words = caption.split()
    return collections.Counter(tuple(words[i:i + n]) for n in range(1, n_max + 1)
                               for i in range(len(words) - n + 1))


def _similarity(a: collections.Counter, b: collections.Counter) -> float:
    """F1 of clipped 1- and 2-gram overlap."""
    overlap = sum((a & b).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(a.values()), overlap / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def consensus_caption(candidates: list[str]) -> str:
    """The candidate with the highest mean similarity to the other candidates."""
    grams = [_ngrams(c) for c in candidates]
    best, best_score = candidates[0], -1.0
    for i, g in enumerate(grams):
        score = np.mean([_similarity(g, h) for j, h in enumerate(grams) if j != i]) if len(grams) > 1 else 0.0
        if score > best_score:
            best, best_score = candidates[i], score
    return best


def nearest_neighbour_captions(encoder, data_dir: str, split: str, image_size: int,
                               feature_dim: int | None, k: int = 5) -> tuple[dict, dict]:
    """(image id -> retrieved caption, image id -> references) for every image of `split`."""
    train = data.make_dataset(data_dir, "train", "caption_eval", batch_size=128, image_size=image_size,
                              feature_dim=feature_dim)
    query = data.make_dataset(data_dir, split, "caption_eval", batch_size=128, image_size=image_size,
                              feature_dim=feature_dim)
    _, train_features, train_captions = _embed(encoder, train)
    query_ids, query_features, query_references = _embed(encoder, query)
    similarity = query_features @ train_features.T  # [queries, train images]
    neighbours = np.argsort(-similarity, axis=1)[:, :k]  # [queries, k]
    retrieved = {qid: consensus_caption([c for n in row for c in train_captions[n]])
                 for qid, row in zip(query_ids, neighbours)}
    return retrieved, dict(zip(query_ids, query_references))


def nearest_neighbour_baseline(model, data_dir: str, split: str, image_size: int,
                               feature_dim: int | None, k: int = 5) -> dict:
    """pycocoevalcap metrics of nearest-neighbour retrieval in the captioner's encoder space."""
    retrieved, references = nearest_neighbour_captions(model.encoder, data_dir, split, image_size,
                                                       feature_dim, k)
    return caption_metrics.score_captions(references, retrieved, spice=False)
