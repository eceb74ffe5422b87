"""SavedModel export: hermetic fresh-process serving, parity with the package, ops, warmup, versions.

One tiny LRCN-2f (small_cnn at 32x32) is exported once per module; its training workspace (the
run directory holding the vocabulary) is deleted before anything loads the export, and a fresh
interpreter in which keras and vcaption cannot be imported serves it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib

import keras
import numpy as np
import pytest
from helpers import TF_ONLY_PREAMBLE, run_batching_test
import tensorflow as tf

from vcaption import decoding, images, text
from vcaption.captioning import export
from vcaption.runtime import export_core
from vcaption.config import DecodeConfig
from vcaption.captioning.lrcn import LRCNCaptioner

IMAGE_SIZE = 32
DECODE = DecodeConfig(beam_size=3, max_length=8, alpha=0.6, n_best=2)
WORDS = "a red blue green circle square triangle small big left right of the on".split()
SAMPLES, TEMPERATURE = 6, 1.0


def _jpeg(seed: int, height: int = 40, width: int = 52) -> bytes:
    """A random-colour left half and another right half, plus noise: images the CNN tells apart."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), np.float32)
    pixels[:, : width // 2] = rng.integers(0, 256, size=3)
    pixels[:, width // 2:] = rng.integers(0, 256, size=3)
    pixels += rng.normal(0.0, 8.0, size=pixels.shape)
    return images.encode_jpeg(tf.constant(np.clip(pixels, 0, 255).astype(np.uint8))).numpy()


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature + IHDR claiming width x height: a decompression-bomb header, no pixels."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
            + struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF))


def _tiny_captioner() -> LRCNCaptioner:
    keras.utils.set_random_seed(0)
    model = LRCNCaptioner(vocab_size=len(text.RESERVED_TOKENS) + len(WORDS), variant="2f",
                          hidden_units=8, embedding_dim=6, image_embedding_dim=5,
                          encoder="small_cnn", image_size=IMAGE_SIZE, feature_dim=6, dropout=0.0)
    # Larger random decoder weights so that captions differ between images (a fresh init says
    # the same thing for every image, which would make parity checks weak). The CNN keeps its
    # init: scaling it saturates the LSTMs, and then every image looks the same again.
    rng = np.random.default_rng(0)
    encoder_paths = {variable.path for variable in model.encoder.variables}
    for variable in model.trainable_variables:
        if variable.path in encoder_paths:
            continue
        if "kernel" in variable.path or "embeddings" in variable.path:
            scale = 3.0 / np.sqrt(variable.shape[0])  # ~3x a Glorot-sized kernel
            variable.assign(rng.normal(0.0, scale, size=variable.shape).astype("float32"))
    return model


def _in_package(model, vocab, jpegs):
    """The package's own path: preprocess_image, encoder, beam_search / sample, Vocabulary.decode."""
    pixels = tf.stack([images.preprocess_image(j, IMAGE_SIZE) for j in jpegs])  # [batch, S, S, 3]
    features = model.encoder(tf.cast(pixels, tf.float32), training=False)  # [batch, F]
    state = model.initial_state(model.encode_visual(tf.cast(pixels, tf.float32)))

    def strings(result):
        n = result.ids.shape[1]
        flat = tf.reshape(result.ids, [-1, DECODE.max_length])  # [batch * n, length]
        captions = tf.reshape(vocab.decode(flat), [len(jpegs), n]).numpy()  # [batch, n]
        return {"captions": [[c.decode() for c in row] for row in captions],
                "scores": np.asarray(result.scores).tolist()}

    beam = decoding.beam_search(model.step, state, model.vocab_size, DECODE.beam_size,
                                DECODE.max_length, n_best=DECODE.n_best, alpha=DECODE.alpha)
    sampled = decoding.sample(model.step, state, DECODE.max_length, num_samples=SAMPLES,
                              temperature=TEMPERATURE, seed=export.SAMPLE_SEED,
                              n_best=DECODE.n_best)
    return {"serving_default": strings(beam), "caption_sample": strings(sampled),
            "features": features.numpy()}


# Runs in a fresh interpreter with TensorFlow only (see helpers.TF_ONLY_PREAMBLE).
SERVE_SCRIPT = TF_ONLY_PREAMBLE + textwrap.dedent("""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    export_dir, request_path, out_path = sys.argv[1:]
    with open(request_path) as f:
        request = json.load(f)
    jpegs = [base64.b64decode(j) for j in request["jpegs"]]

    loaded = tf.saved_model.load(export_dir)

    def strings(out):
        return {"captions": [[c.decode() for c in row] for row in out["captions"].numpy()],
                "scores": out["scores"].numpy().tolist()}

    result = {
        "serving_default": strings(loaded.signatures["serving_default"](
            image_bytes=tf.constant(jpegs))),
        "caption_features": strings(loaded.signatures["caption_features"](
            features=tf.constant(request["features"], tf.float32))),
        "caption_sample": strings(loaded.signatures["caption_sample"](
            image_bytes=tf.constant(jpegs), temperature=tf.constant([request["temperature"]] * len(jpegs)),
            num_samples=tf.constant([request["num_samples"]] * len(jpegs)))),
    }

    proto = saved_model_pb2.SavedModel()
    with open(export_dir + "/saved_model.pb", "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for meta_graph in proto.meta_graphs:
        library = meta_graph.graph_def.library
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in library.function:
            ops.update(node.op for node in function.node_def)
        ops -= {function.signature.name for function in library.function}
        result["object_kinds"] = sorted({
            node.user_object.identifier for node in meta_graph.object_graph_def.nodes
            if node.WhichOneof("kind") == "user_object"})
    result["ops"] = sorted(ops)
    result["unregistered_ops"] = sorted(op for op in ops if op_def_registry.get(op) is None)
    result["modules"] = sorted(m for m in sys.modules
                               if m.split(".")[0] in ("keras", "tf_keras", "vcaption"))
    with open(out_path, "w") as f:
        json.dump(result, f)
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports the tiny captioner, computes the package's answers, deletes the workspace."""
    tmp = tmp_path_factory.mktemp("export")
    run_dir = tmp / "run"
    vocab_path = text.Vocabulary.write(WORDS, str(run_dir / "data" / "vocab.txt"))
    model = _tiny_captioner()
    path = export.export_captioner(model, vocab_path, str(tmp / "saved_models"), "tiny",
                                   IMAGE_SIZE, DECODE)
    jpegs = [_jpeg(seed) for seed in range(3)]
    expected = _in_package(model, text.Vocabulary(vocab_path), jpegs)
    # TF Transform's test: the training workspace is gone, the export must still serve.
    shutil.rmtree(run_dir)
    return {"path": path, "root": str(tmp / "saved_models"), "model": model, "jpegs": jpegs,
            "expected": expected, "run_dir": run_dir, "tmp": tmp}


@pytest.fixture(scope="module")
def served(exported):
    """What a fresh TensorFlow-only interpreter gets from the export."""
    tmp = exported["tmp"]
    request = {"jpegs": [base64.b64encode(j).decode() for j in exported["jpegs"]],
               "features": exported["expected"]["features"].tolist(),
               "temperature": TEMPERATURE, "num_samples": SAMPLES}
    (tmp / "request.json").write_text(json.dumps(request))
    (tmp / "serve.py").write_text(SERVE_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(tmp / "serve.py"), exported["path"],
                    str(tmp / "request.json"), str(tmp / "served.json")],
                   check=True, env=env, cwd=str(tmp))
    return json.loads((tmp / "served.json").read_text())


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported["path"])


def test_fresh_process_parity(exported, served):
    assert served["modules"] == []  # neither keras nor vcaption was imported to serve
    expected = exported["expected"]
    for signature in ("serving_default", "caption_sample"):
        assert served[signature]["captions"] == expected[signature]["captions"], signature
        # Eager beam search with a static batch runs the padded official search, the export
        # (dynamic batch) the unpadded one: the same sums, up to float32 round-off (~1 ulp).
        np.testing.assert_allclose(served[signature]["scores"], expected[signature]["scores"],
                                   rtol=1e-6, atol=0)
    captions = served["serving_default"]["captions"]
    assert len({tuple(row) for row in captions}) > 1  # the images are told apart
    assert all(len(row) == DECODE.n_best for row in captions)
    # From encoder outputs, the CNN skipped: the same N-best lists.
    assert served["caption_features"]["captions"] == captions
    np.testing.assert_allclose(served["caption_features"]["scores"],
                               served["serving_default"]["scores"], rtol=1e-6)


def _per_row(value, rows=2, dtype=tf.float32):
    return tf.constant([value] * rows, dtype)


def test_sampling_signature_matches_decoding_sample(exported, loaded):
    jpegs = tf.constant(exported["jpegs"][:2])
    sample = loaded.signatures["caption_sample"]
    out = sample(image_bytes=jpegs, temperature=_per_row(TEMPERATURE),
                 num_samples=_per_row(SAMPLES, dtype=tf.int32))
    assert out["captions"].shape == (2, DECODE.n_best)
    # Fewer samples than N: the extra slots are unfilled.
    one = sample(image_bytes=jpegs, temperature=_per_row(0.5), num_samples=_per_row(1, dtype=tf.int32))
    assert [row[1] for row in one["captions"].numpy().tolist()] == [b"", b""]
    assert np.all(one["scores"].numpy()[:, 1] == -np.inf)
    for temperature, num_samples, problem in [
            ([0.0, 1.0], [4, 4], "temperature must be > 0"),
            ([1.0, 1.0], [4, 0], "num_samples must be >= 1"),
            ([1.0, 1.0], [4, export.MAX_SAMPLES + 1], "num_samples must be <="),
            ([1.0], [4, 4], "temperature must hold one value per image"),
            ([1.0, 1.0], [4, 4, 4], "num_samples must hold one value per image")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=problem):
            sample(image_bytes=jpegs, temperature=tf.constant(temperature),
                   num_samples=tf.constant(num_samples))


def test_sampling_settings_are_per_image(exported, loaded):
    """Each image samples with its own temperature and number of samples, as it would alone in a
    batch of that setting: what lets the model server batch requests with different settings."""
    model, jpegs = exported["model"], exported["jpegs"][:2]
    vocab = text.Vocabulary(os.path.join(exported["path"], "assets", "vocab.txt"))
    pixels = tf.stack([images.preprocess_image(j, IMAGE_SIZE) for j in jpegs])
    state = model.initial_state(model.encode_visual(tf.cast(pixels, tf.float32)))

    def package(temperature, row):  # decoding.sample on both images, one temperature, this row
        result = decoding.sample(model.step, state, DECODE.max_length, num_samples=SAMPLES,
                                 temperature=temperature, seed=export.SAMPLE_SEED,
                                 n_best=DECODE.n_best)
        ids = tf.reshape(result.ids[row], [-1, DECODE.max_length])  # [N, length]
        return vocab.decode(ids).numpy().tolist(), result.scores[row].numpy()

    out = loaded.signatures["caption_sample"](
        image_bytes=tf.constant(jpegs), temperature=tf.constant([0.5, 2.0]),
        num_samples=tf.constant([SAMPLES, SAMPLES]))
    # The two temperatures draw different samples, so a temperature applied to the wrong row shows.
    assert package(0.5, 0)[0] != package(2.0, 0)[0] and package(0.5, 1)[0] != package(2.0, 1)[0]
    for row, temperature in enumerate([0.5, 2.0]):
        captions, scores = package(temperature, row)
        assert out["captions"].numpy()[row].tolist() == captions
        np.testing.assert_allclose(out["scores"].numpy()[row], scores, rtol=1e-6)
    # One image asks for a single sample: its other slot stays unfilled while its neighbour's
    # (SAMPLES draws) is filled.
    mixed = loaded.signatures["caption_sample"](
        image_bytes=tf.constant(jpegs), temperature=tf.constant([2.0, 2.0]),
        num_samples=tf.constant([1, SAMPLES]))
    assert mixed["captions"].numpy()[0, 1] == b"" and mixed["scores"].numpy()[0, 1] == -np.inf
    assert mixed["captions"].numpy()[1, 1] != b""


def test_every_signature_batches_row_for_row(exported):
    jpeg = np.array(exported["jpegs"][:1], object)
    run_batching_test(exported["path"], {
        "serving_default": {"image_bytes": jpeg},
        "caption_features": {"features": exported["expected"]["features"][:1]},
        "caption_sample": {"image_bytes": jpeg, "temperature": np.array([1.0], np.float32),
                           "num_samples": np.array([SAMPLES], np.int32)},
    }, random=("caption_sample",))


def test_workspace_deleted_and_vocabulary_travels_as_asset(exported, loaded):
    assert not exported["run_dir"].exists()
    assert (open(os.path.join(exported["path"], "assets", "vocab.txt")).read().split()
            == [*text.RESERVED_TOKENS, *WORDS])
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(exported["jpegs"]))
    assert ([[c.decode() for c in row] for row in out["captions"].numpy()]
            == exported["expected"]["serving_default"]["captions"])


def test_only_core_ops_and_no_python(served):
    assert "LookupTableFindV2" in served["ops"] and "DecodeImage" in served["ops"]
    assert set(served["unregistered_ops"]) <= export_core.SERVING_EXTRA_OPS
    assert not set(served["ops"]) & export_core.PYTHON_OPS
    assert export_core.SERVING_EXTRA_OPS == frozenset()  # text.py uses core ops only
    # Only generic TensorFlow objects in the object graph: no Keras layer or model revivers.
    assert set(served["object_kinds"]) <= {"_generic_user_object", "trackable_list_wrapper",
                                           "trackable_dict_wrapper", "signature_map"}


def test_saved_model_cli_and_warmup(exported, loaded):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", exported["path"]], check=True,
                           capture_output=True, text=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
    for signature, inputs in [("serving_default", ["image_bytes"]),
                              ("caption_features", ["features"]),
                              ("caption_sample", ["image_bytes", "temperature", "num_samples"])]:
        block = shown.split(f"signature_def['{signature}']:")[1].split("signature_def[")[0]
        for name in [*inputs, "captions", "scores"]:
            assert f"['{name}'] tensor_info" in block, (signature, name)
        assert "DT_STRING" in block and "DT_FLOAT" in block

    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported["path"], "assets.extra", export_core.WARMUP_FILE)
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) >= 1
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "tiny"
        assert request.model_spec.signature_name == "serving_default"
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert out["captions"].shape == (inputs["image_bytes"].shape[0], DECODE.n_best)


@pytest.mark.parametrize("bad, problem", [
    (b"definitely not an image", "not a JPEG, PNG, GIF or BMP image"),
    (b"", "not a JPEG, PNG, GIF or BMP image"),
    (_png_header(30000, 30000), "image too large"),
])
def test_bad_inputs_fail_clearly_and_serving_continues(exported, loaded, bad, problem):
    serve = loaded.signatures["serving_default"]
    good = exported["jpegs"][0]
    with pytest.raises(tf.errors.InvalidArgumentError, match=problem):
        serve(image_bytes=tf.constant([good, bad]))
    out = serve(image_bytes=tf.constant([good]))
    assert ([c.decode() for c in out["captions"].numpy()[0]]
            == exported["expected"]["serving_default"]["captions"][0])


def _tree_digest(path):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            digest.update(name.encode())
            with open(os.path.join(root, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_versions_are_never_overwritten(exported, tmp_path):
    root = exported["root"]
    before = _tree_digest(exported["path"])
    vocab_path = text.Vocabulary.write(WORDS, str(tmp_path / "vocab.txt"))
    second = export.export_captioner(exported["model"], vocab_path, root, "tiny", IMAGE_SIZE,
                                     DECODE)
    assert second == os.path.join(root, "tiny", "2")
    assert exported["path"] == os.path.join(root, "tiny", "1")
    assert _tree_digest(exported["path"]) == before
    assert sorted(os.listdir(os.path.join(root, "tiny"))) == ["1", "2"]  # no temporary left
