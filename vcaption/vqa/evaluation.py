"""Scoring VQA systems on a split's records: the official accuracy of decoded answer strings.

The model and the question-only baseline answer every question of the split (`predict_answers`);
the "prior per question type" baseline answers from training counts alone (`question_type_prior`).
All three are scored by the official VQA accuracy (`vcaption.metrics.vqa.score`) against the
records' human answers (`ground_truth`), and the model's answers are written in the official
results format (`write_results`), which `python -m vcaption.evaluate --task vqa` re-scores from
the published JSON files.
"""

from __future__ import annotations

import collections
import json

import tensorflow as tf

from vcaption import data as data_lib
from vcaption import images, records
from vcaption.metrics import vqa as vqa_metrics
from vcaption.runtime.prepared_data import PreparedData


def _eval_elements(data: PreparedData, split: str, image_size: int, feature_dim: int | None,
                   batch_size: int) -> tf.data.Dataset:
    """Batches of {"question_id", "visual", "question"} of a split, in record order."""
    def to_element(serialized):
        parsed = records.parse_vqa_example(serialized, feature_dim)
        visual = (parsed["features"] if feature_dim is not None
                  else images.preprocess_image(parsed["image_jpeg"], image_size))
        return {"question_id": parsed["question_id"], "visual": visual,
                "question": tf.cast(parsed["question_ids"], tf.int32)}

    serialized = data_lib.read_records(data.split_pattern(split), shuffle=False)
    return serialized.map(to_element, num_parallel_calls=tf.data.AUTOTUNE).padded_batch(batch_size)


def ground_truth(data: PreparedData, split: str) -> dict[str, dict]:
    """{question_id: {"answers", "answer_type", "question_type", "multiple_choice_answer"}} of a
    split's records (no image is decoded)."""
    truth = {}
    serialized = data_lib.read_records(data.split_pattern(split), shuffle=False)
    for parsed in serialized.map(records.parse_vqa_example).as_numpy_iterator():
        truth[parsed["question_id"].decode()] = {
            "answers": [a.decode() for a in parsed["answers"]],
            "answer_type": parsed["answer_type"].decode(),
            "question_type": parsed["question_type"].decode(),
            "multiple_choice_answer": parsed["multiple_choice_answer"].decode()}
    return truth


def predict_answers(model, answers: list[str], data: PreparedData, split: str, image_size: int,
                    feature_dim: int | None = None, batch_size: int = 256) -> dict[str, str]:
    """{question_id: the model's top answer} over a split's records.

    Args:
        model: a `VQAModel`; the question-only one (`model.image` False) gets no visual input.
        answers: the answer vocabulary, in answer-id order (`PreparedData.answers`).
        data: the preprocessing output holding the split.
        split: "train", "val" or "test".
        image_size: side the images are resized to (ignored with `feature_dim`).
        feature_dim: read precomputed features of this size instead of images.
        batch_size: questions per forward pass.
    """
    predictions = {}
    for batch in _eval_elements(data, split, image_size, feature_dim, batch_size):
        inputs = {"question": batch["question"]}
        if model.image:
            inputs["visual"] = batch["visual"]
        best = tf.argmax(model(inputs, training=False), axis=-1).numpy()  # [batch]
        for question_id, index in zip(batch["question_id"].numpy(), best):
            predictions[question_id.decode()] = answers[int(index)]
    return predictions


def question_type_prior(train_truth: dict[str, dict]) -> dict[str, str]:
    """Antol et al. §5 "prior (per Q type)": the most common (normalised) training answer of each
    question type; ties go to the answer seen first."""
    counts = collections.defaultdict(collections.Counter)
    for t in train_truth.values():
        counts[t["question_type"]][vqa_metrics.normalize_answer(t["multiple_choice_answer"])] += 1
    return {q: c.most_common(1)[0][0] for q, c in counts.items()}


def prior_predictions(prior: dict[str, str], truth: dict[str, dict], fallback: str) -> dict[str, str]:
    """The prior's answer for every question (`fallback`, the top answer, for unseen types)."""
    return {q: prior.get(t["question_type"], fallback) for q, t in truth.items()}


def write_results(path: str, predictions: dict[str, str]) -> None:
    """Official VQA results format: [{"question_id": int, "answer": str}] (local or gs:// path)."""
    results = [{"question_id": int(q) if q.isdigit() else q, "answer": a}
               for q, a in sorted(predictions.items(), key=lambda qa: (len(qa[0]), qa[0]))]
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(results, indent=1))
