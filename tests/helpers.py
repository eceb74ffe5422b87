"""Reusable test helpers (KerasHub style): config round trip, `.keras` save/load, SavedModel batching.

Import from a test module as `from helpers import run_saving_test` (pytest puts `tests/` on
`sys.path` because it holds the root conftest.py).
"""

from __future__ import annotations

import os

import keras
import numpy as np


def _as_numpy(structure):
    return keras.tree.map_structure(lambda x: keras.ops.convert_to_numpy(x), structure)


def assert_all_close(actual, expected, atol=1e-6, rtol=1e-6):
    """Element-wise closeness of two (nested) structures of tensors."""
    keras.tree.assert_same_structure(actual, expected)
    for a, e in zip(keras.tree.flatten(_as_numpy(actual)), keras.tree.flatten(_as_numpy(expected))):
        np.testing.assert_allclose(a, e, atol=atol, rtol=rtol)


def run_serialization_test(instance):
    """`get_config` -> `from_config` -> `get_config` is the identity, and so is
    `keras.saving.serialize_keras_object` -> `deserialize_keras_object`.

    Returns the re-created instance.
    """
    config = instance.get_config()
    revived = instance.__class__.from_config(config)
    assert revived.get_config() == config
    serialized = keras.saving.serialize_keras_object(instance)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert revived.__class__ is instance.__class__
    assert revived.get_config() == config
    return revived


def assert_steps_reproduce_forward(model, visual, caption_in, atol=1e-4) -> np.ndarray:
    """A captioner's `initial_state`/`step` decoding API gives the logits of its teacher-forced
    forward pass, step by step; returns those logits `[B, T, V]`."""
    full = np.asarray(model({"visual": visual, "caption_in": caption_in}))  # [B, T, V]
    state = model.initial_state(model.encode_visual(visual))
    steps = []
    for t in range(caption_in.shape[1]):
        logits, state = model.step(keras.ops.convert_to_tensor(caption_in[:, t]), state)
        steps.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=atol)
    return full


def run_saving_test(model, inputs, tmp_path, atol=1e-6):
    """Saves `model` as `.keras`, loads it back, and checks identical config and outputs.

    Returns the loaded model.
    """
    expected = model(inputs, training=False)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.__class__ is model.__class__
    assert restored.get_config() == model.get_config()
    assert_all_close(restored(inputs, training=False), expected, atol=atol, rtol=0)
    return restored


def run_steps(model, inputs):
    """A captioner's `step` fed `inputs["caption_in"]` one token at a time (the decoding path);
    returns the logits `[B, T, V]` as numpy and the last state."""
    state = model.initial_state(model.encode_visual(inputs["visual"]))
    logits = []
    for t in range(inputs["caption_in"].shape[1]):
        step_logits, state = model.step(inputs["caption_in"][:, t], state)
        logits.append(step_logits)
    return np.stack([keras.ops.convert_to_numpy(x) for x in logits], axis=1), state  # [B, T, V]


# The start of a script run in a fresh interpreter to prove an export needs TensorFlow only: keras
# and vcaption are made unimportable while TensorFlow initialises (TF 2.20's `import tensorflow`
# imports keras eagerly when it is installed), then forgotten, so that anything loading or running
# the export imports would show in sys.modules (names in `_BLOCKED`).
TF_ONLY_PREAMBLE = """\
import base64, json, sys
_BLOCKED = ("keras", "tf_keras", "vcaption")
for name in _BLOCKED:
    sys.modules[name] = None
import tensorflow as tf
for name in _BLOCKED:
    del sys.modules[name]
"""


def run_batching_test(export_dir, rows_by_signature, random=()):
    """Every signature of a SavedModel obeys TF Serving's batching rules (`--enable_batching`).

    Statically, every input and output of every signature has a leading batch dimension of any
    size (`export_core.batching_violations`). Then each signature runs on a one-row request and
    on three copies of it, as the model server would batch three such requests: every output has
    one row per input row, and each copy's rows equal the lone request's — shapes always, values
    too unless the signature is in `random` (sampling differs from row to row).

    Args:
        export_dir: the SavedModel version directory.
        rows_by_signature: {signature name: {input name: a one-row array}}; must name every
            signature, so that none goes unchecked.
        random: signatures whose values depend on the row.
    """
    import tensorflow as tf

    from vcaption.runtime import export_core

    assert export_core.batching_violations(export_dir) == []
    signatures = tf.saved_model.load(export_dir).signatures
    assert set(rows_by_signature) == set(signatures), "every signature has a request to check"
    for name, row in rows_by_signature.items():
        alone = signatures[name](**{k: tf.constant(v) for k, v in row.items()})
        copies = signatures[name](**{k: tf.constant(np.concatenate([v] * 3, axis=0)) for k, v in row.items()})
        for key, value in alone.items():
            value, batched = value.numpy(), copies[key].numpy()
            assert value.shape[0] == 1 and batched.shape[0] == 3, (name, key, value.shape, batched.shape)
            first = np.asarray(value[0])
            for copy in map(np.asarray, batched):  # a row of a [B] string output is bytes
                assert copy.shape == first.shape, (name, key, copy.shape, first.shape)
                if name not in random:
                    if copy.dtype.kind in "fc":
                        np.testing.assert_allclose(copy, first, rtol=1e-5, atol=1e-5, err_msg=f"{name} {key}")
                    else:
                        np.testing.assert_array_equal(copy, first, err_msg=f"{name} {key}")
