"""`.keras` files written before the family-folder move (module paths `vcaption.models.*`) still load.

The fixtures in `tests/fixtures/keras_v1/` were written by the code of commit 23ff716 (see
`make_fixtures.py` there), with fixed inputs and the outputs that code computed. Keras finds the
classes by their registered names ("vcaption>LRCNCaptioner"), which the move kept; this proves it
for every model class, weights and outputs included.
"""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest

from vcaption import registry

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "keras_v1"
CLASSES = {"lrcn_2f": "LRCNCaptioner", "karpathy_rnn": "KarpathyMultimodalRNN", "mao_mrnn": "MaoMultimodalRNN",
           "vqa": "VQAModel", "object_classifier": "ObjectClassifier", "activity": "LRCNActivityRecognizer",
           "s2vt": "S2VTCaptioner", "ranker": "RegionRanker", "video_lrcn": "VideoLRCNCaptioner"}


# Model classes added after the move: no file of theirs was written by the old module paths.
ADDED_AFTER_THE_MOVE = {"TuplePredictor", "SemanticTupleCaptioner", "VisualSemanticEmbedding", "NOCCaptioner"}


def test_every_model_class_has_a_fixture_written_before_the_move():
    assert set(CLASSES.values()) | ADDED_AFTER_THE_MOVE == set(registry.MODELS)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_keras_file_written_before_the_move_loads_and_computes_the_same(name):
    model = registry.load_model(str(FIXTURES / f"{name}.keras"))
    assert type(model).__name__ == CLASSES[name]
    assert type(model).__module__.startswith(registry.MODELS[CLASSES[name]])  # today's module, not vcaption.models
    saved = np.load(FIXTURES / f"{name}.npz")
    inputs = {k[3:]: saved[k] for k in saved.files if k.startswith("in_")}
    inputs = inputs["x"] if set(inputs) == {"x"} else inputs
    outputs = keras.tree.flatten(model(inputs, training=False))
    expected = [saved[f"out_{i}"] for i in range(len(outputs))]
    assert len(expected) == len([k for k in saved.files if k.startswith("out_")])
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-4, atol=1e-5)
