"""The diagnosis metrics.json's `noc` block carries beside the F1: the visual network's score of
each class word on every test image, read in the order of the classes (`visual_network`)."""

from __future__ import annotations

import types

import keras
import numpy as np

from vcaption.noc.model import NOCCaptioner
from vcaption.noc.task import visual_network_scores
from vcaption.runtime.prepared_data import PreparedData


def test_visual_network_scores_name_each_class_by_its_own_word(shapes_records):
    data = PreparedData(str(shapes_records))
    words = data.vocabulary().words
    classes = ["square", "circle"]  # not vocabulary order: the scores must follow `classes`
    keras.utils.set_random_seed(0)
    model = NOCCaptioner(vocab_size=len(words), class_word_ids=[words.index(c) for c in classes],
                         hidden_units=8, embedding_dim=4, encoder="small_cnn", image_size=32)
    # A visual network that scores every image alike: the bias alone.
    model.visual_words.kernel.assign(np.zeros(model.visual_words.kernel.shape, np.float32))
    bias = np.zeros(len(words), np.float32)
    bias[words.index("square")], bias[words.index("circle")] = 2.0, -3.0
    model.visual_words.bias.assign(bias)
    resources = types.SimpleNamespace(classes=classes, class_word_ids=model.class_word_ids)
    cfg = types.SimpleNamespace(data=types.SimpleNamespace(image_size=32))
    scores = visual_network_scores(model, resources, data, cfg)
    assert len(scores) == data.stats["examples"]["test"] > 0
    for value in scores.values():
        assert value == {"square": 2.0, "circle": -3.0}
