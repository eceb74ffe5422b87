"""Scoring an object classifier: ranking and set metrics over the labels, and the printed table.

Mean average precision over the labels (how well each label's scores rank the images that show
it), exact-set accuracy (the predicted set at p > 0.5 is the true set) and micro-F1 — over all
labels and over the "anywhere" labels alone (which objects the image shows). The label-prior
baseline scores every image with the labels' training frequencies: the best a classifier can do
without looking.
"""

from __future__ import annotations

import numpy as np

from vcaption.objects.labels import LabelVocabulary, make_dataset
from vcaption.runtime.prepared_data import PreparedData


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve of one label: the mean, over the positive images, of
    the precision among images scored at least as high (ties ranked pessimistically)."""
    if not positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    ranked_scores, hits = scores[order], positive[order].astype(np.float64)
    # A tie group counts all its images before any of its hits: rank = last index of the group.
    last_of_group = np.searchsorted(-ranked_scores, -ranked_scores, side="right")
    hits_so_far = np.cumsum(hits)[last_of_group - 1]
    precision = hits_so_far / last_of_group
    return float(precision[hits > 0].mean())


def classification_metrics(scores: np.ndarray, targets: np.ndarray, predicted: np.ndarray) -> dict:
    """mAP over labels with a positive image, exact-set accuracy and micro-F1 of [N, L] arrays
    (`predicted` boolean)."""
    truth = targets > 0.5
    present = np.flatnonzero(truth.any(axis=0))
    ap = [average_precision(scores[:, j], truth[:, j]) for j in present]
    true_positives = np.logical_and(predicted, truth).sum()
    f1_denominator = predicted.sum() + truth.sum()
    return {"mAP": float(np.mean(ap)) if ap else float("nan"),
            "exact_set_accuracy": float((predicted == truth).all(axis=1).mean()),
            "micro_f1": float(2 * true_positives / f1_denominator) if f1_denominator else 0.0,
            "labels_with_positives": int(len(present))}


def score(scores: np.ndarray, targets: np.ndarray, predicted: np.ndarray, labels: LabelVocabulary) -> dict:
    """`classification_metrics` over all labels, and over the "anywhere" labels as "anywhere"."""
    anywhere = labels.anywhere()
    return {**classification_metrics(scores, targets, predicted),
            "anywhere": classification_metrics(scores[:, anywhere], targets[:, anywhere],
                                               predicted[:, anywhere])}


def logits_and_targets(model, data: PreparedData, split: str, labels: LabelVocabulary,
                       image_size: int, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits and the true multi-hot targets of a split, both [N, L], in one pass
    (each image is decoded once)."""
    outputs = [(model.predict_on_batch(x), y.numpy())
               for x, y in make_dataset(data, split, labels, image_size, batch_size)]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


def format_table(rows: dict[str, dict], title: str) -> str:
    """Fixed-width table (percent): one row per system, mAP, exact set, micro-F1, anywhere: exact."""
    header = f"{'system':<24}{'mAP':>8}{'exact set':>11}{'micro-F1':>10}{'anywhere: exact':>17}"
    lines = [title, header, "-" * len(header)]
    for name, m in rows.items():
        lines.append(f"{name:<24}{100 * m['mAP']:8.2f}{100 * m['exact_set_accuracy']:11.2f}"
                     f"{100 * m['micro_f1']:10.2f}{100 * m['anywhere']['exact_set_accuracy']:17.2f}")
    return "\n".join(lines)
