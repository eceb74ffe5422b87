"""NOCCaptioner: the caption model is the sum of the visual scores and the language model; the
step API decodes what the teacher-forced pass scores; each loss trains its own networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from vcaption import registry, text
from vcaption.noc.model import NOCCaptioner

WORDS = ["a", "red", "circle", "star", "square"]
V = len(text.RESERVED_TOKENS) + len(WORDS)
CLASSES = [V - 3, V - 2, V - 1]  # circle, star, square


def _model(image_in_language_model=True) -> NOCCaptioner:
    keras.utils.set_random_seed(0)
    return NOCCaptioner(vocab_size=V, class_word_ids=CLASSES, hidden_units=8, embedding_dim=4,
                        image_embedding_dim=5, image_in_language_model=image_in_language_model,
                        encoder="small_cnn", image_size=32)


def _batch(rng, batch=3, time=5):
    return {"visual": rng.integers(0, 256, (batch, 32, 32, 3)).astype(np.float32),
            "caption_in": rng.integers(1, V, (batch, time)).astype(np.int32),
            "caption_out": rng.integers(2, V, (batch, time)).astype(np.int32),
            "text_in": rng.integers(1, V, (batch, time)).astype(np.int32),
            "text_out": rng.integers(2, V, (batch, time)).astype(np.int32),
            "labelled_images": rng.integers(0, 256, (batch, 32, 32, 3)).astype(np.float32),
            "labels": rng.integers(0, 2, (batch, len(CLASSES))).astype(np.float32)}


@pytest.mark.parametrize("image_in_language_model", [True, False])
def test_step_decoding_matches_teacher_forcing_and_adds_the_visual_scores(image_in_language_model):
    model = _model(image_in_language_model)
    batch = _batch(np.random.default_rng(0))
    logits = model({"visual": batch["visual"], "caption_in": batch["caption_in"]}).numpy()  # [B, T, V]
    state = model.initial_state(model.encode_visual(batch["visual"]))
    for t in range(batch["caption_in"].shape[1]):
        step_logits, state = model.step(batch["caption_in"][:, t], state)
        np.testing.assert_allclose(step_logits.numpy(), logits[:, t], atol=1e-4)
    # The caption model = the language model's logits + the visual network's scores (every step).
    features = model.encoder(batch["visual"])
    image_term = model._image_term(features)
    language = model.language_logits(batch["caption_in"], image_term).numpy()
    visual = model.visual_scores(features).numpy()
    np.testing.assert_allclose(logits, language + visual[:, None, :], atol=1e-4)


def _changed(before, model):
    return {v.path for v, old in zip(model.trainable_variables, before) if not np.array_equal(v.numpy(), old)}


@pytest.mark.parametrize("objectives, moves, stays", [
    (("image",), "visual_word_scores", "word_embedding"),  # image-specific loss: visual network only
    (("text",), "word_embedding", "visual_word_scores"),  # text-specific loss: language model only
])
def test_each_loss_trains_its_own_network(objectives, moves, stays):
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.objectives = objectives
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_on_batch(_batch(np.random.default_rng(1)), return_dict=True)
    assert set(logs) == {"loss", f"{objectives[0]}_loss"}
    changed = _changed(before, model)
    assert any(moves in path for path in changed), changed
    assert not any(stays in path for path in changed), changed
    if objectives == ("text",):
        assert not any("small_cnn" in path or "conv" in path for path in changed), changed


def test_joint_step_sums_three_losses_and_moves_every_network():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_on_batch(_batch(np.random.default_rng(2)), return_dict=True)
    assert logs["loss"] == pytest.approx(logs["image_loss"] + logs["text_loss"] + logs["caption_loss"], rel=1e-5)
    changed = _changed(before, model)
    for part in ("visual_word_scores", "word_embedding", "recurrence_2", "image_projection", "conv1"):
        assert any(part in path for path in changed), part


def test_saved_model_loads_with_its_config(tmp_path):
    model = _model()
    path = str(tmp_path / "noc.keras")
    model.save(path)
    loaded = registry.load_model(path)
    assert loaded.class_word_ids == CLASSES and loaded.image_in_language_model
    batch = _batch(np.random.default_rng(3))
    inputs = {"visual": batch["visual"], "caption_in": batch["caption_in"]}
    np.testing.assert_allclose(loaded(inputs).numpy(), model(inputs).numpy(), atol=1e-5)
    assert tf.reduce_all(loaded.word_embedding.embeddings == model.word_embedding.embeddings)


def test_image_loss_sums_the_classes_and_averages_the_images():
    model = _model()
    model.objectives = ("image",)
    batch = _batch(np.random.default_rng(3))
    scores = model.visual_scores(model.encoder(batch["labelled_images"], training=True)).numpy()[:, CLASSES]
    labels = batch["labels"]
    # By hand: -[y log s(x) + (1 - y) log(1 - s(x))], summed over the 3 classes, mean over 3 images.
    probabilities = 1.0 / (1.0 + np.exp(-scores))
    expected = -(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities)).sum(1).mean()
    assert float(model.losses_of(batch, training=True)["image"]) == pytest.approx(expected, rel=1e-4)
