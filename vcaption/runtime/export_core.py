"""Export core shared by every family's exporter: versioned atomic saves, warmup requests, op check.

Every exporter (captioners, VQA, ranker, video) saves through `save_versioned`, so they share the
rules: a hidden temporary directory renamed into place (a polling TF Serving never loads a partial
export), integer versions never overwritten, a warmup request, `check_ops` (no Python ops,
nothing the stock model server lacks) and `check_batchable` (every input and output of every
signature has a leading batch dimension, as TF Serving's `--enable_batching` needs).
"""

from __future__ import annotations

import os
import uuid

import tensorflow as tf

from vcaption import images

# Ops outside core TensorFlow that an export may contain because the stock TF Serving model
# server links them in (it bundles tf-text's kernels). Empty: `vcaption.text` uses core ops only.
SERVING_EXTRA_OPS: frozenset[str] = frozenset()

# Ops that call back into the Python interpreter: never allowed in an export.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})

WARMUP_FILE = "tf_serving_warmup_requests"


# ----------------------------------------------------------------------------------------------
# Writing exports.


def warmup_jpeg(size: int = 32) -> bytes:
    """A small generated RGB JPEG (a colour gradient) for warmup requests and smoke tests."""
    ramp = tf.cast(tf.linspace(0.0, 255.0, size), tf.uint8)
    red = tf.tile(ramp[tf.newaxis, :], [size, 1])  # [size, size]
    green = tf.transpose(red)
    blue = tf.fill([size, size], tf.constant(128, tf.uint8))
    return images.encode_jpeg(tf.stack([red, green, blue], axis=-1)).numpy()


def write_warmup_requests(export_dir: str, name: str, jpegs=None, inputs=None,
                          signature_name: str = "serving_default") -> str:
    """Writes `assets.extra/tf_serving_warmup_requests`: TFRecords of `PredictionLog`s.

    Args:
        export_dir: the SavedModel version directory.
        name: the model name TF Serving serves it under (`model_spec.name`).
        jpegs: list of encoded images for one `image_bytes` request; default one generated JPEG.
        inputs: instead of `jpegs`, the request's inputs by name (anything `tf.make_tensor_proto`
            takes), for signatures with other inputs (e.g. VQA's image and question).
        signature_name: the signature the request runs.

    Returns:
        The warmup file path.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if inputs is None:
        jpegs = [warmup_jpeg()] if jpegs is None else list(jpegs)
        inputs = {"image_bytes": tf.constant(jpegs, tf.string)}
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=name, signature_name=signature_name))
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    extra = os.path.join(export_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())
    return path


def _saved_model_proto(export_dir: str):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def saved_model_op_types(export_dir: str) -> set[str]:
    """Every op type in a SavedModel: its graphs and every function of their libraries."""
    ops = set()
    for meta_graph in _saved_model_proto(export_dir).meta_graphs:
        graph = meta_graph.graph_def
        functions = {fn.signature.name for fn in graph.library.function}
        ops.update(node.op for node in graph.node)
        for fn in graph.library.function:
            ops.update(node.op for node in fn.node_def)
        ops -= functions  # a node may call a library function by name
    return ops


def check_ops(export_dir: str) -> None:
    """Raises ValueError if the export has an op plain TensorFlow lacks or one that runs Python."""
    from tensorflow.python.framework import op_def_registry

    ops = saved_model_op_types(export_dir)
    python = ops & PYTHON_OPS
    unknown = {op for op in ops - SERVING_EXTRA_OPS if op_def_registry.get(op) is None}
    if python or unknown:
        raise ValueError(f"export {export_dir} uses ops the model server lacks: "
                         f"python={sorted(python)} unregistered={sorted(unknown)}")


def batching_violations(export_dir: str) -> list[str]:
    """What keeps TF Serving's server-side batching from serving the export's signatures.

    With `--enable_batching` the model server concatenates concurrent requests of a signature
    along dimension 0 and splits every output back along dimension 0, so each input and output
    needs a leading batch dimension of any size: it refuses scalar inputs outright, and an output
    without that dimension either fails the batch or hands one request another's rows. (That
    outputs are row-for-row with inputs, not just shaped so, is for each exporter's tests.)

    Returns:
        One line per input or output that breaks the rule, naming the signature; [] if none.
    """
    problems = []
    for meta_graph in _saved_model_proto(export_dir).meta_graphs:
        for name, signature in sorted(meta_graph.signature_def.items()):
            if name.startswith("__"):  # __saved_model_init_op: not a signature clients call
                continue
            for kind, tensors in (("input", signature.inputs), ("output", signature.outputs)):
                for key, info in sorted(tensors.items()):
                    shape = info.tensor_shape
                    dims = [d.size for d in shape.dim]
                    if shape.unknown_rank or not dims or dims[0] != -1:
                        shown = "unknown" if shape.unknown_rank else dims
                        problems.append(f"signature '{name}' {kind} '{key}' has shape {shown}, "
                                        "not [batch, ...] with a batch of any size")
    return problems


def check_batchable(export_dir: str) -> None:
    """Raises ValueError listing `batching_violations` when there are any."""
    problems = batching_violations(export_dir)
    if problems:
        raise ValueError(f"export {export_dir} cannot be served with TF Serving's batching: "
                         + "; ".join(problems))


def _versions(model_root: str) -> list[int]:
    if not tf.io.gfile.isdir(model_root):
        return []
    names = [entry.rstrip("/") for entry in tf.io.gfile.listdir(model_root)]
    return sorted(int(n) for n in names if n.isdigit())


def save_versioned(module: tf.Module, signatures: dict, export_dir_root: str, name: str,
                   warmup_inputs=None, warmup_signature: str = "serving_default") -> str:
    """Saves `module` as `<export_dir_root>/<name>/<next version>/`, atomically; returns the path.

    Every exporter (captioners, VQA, ranker, video) goes through here, so they share the rules:
    a hidden temporary directory renamed into place (a polling server never loads a partial
    export), versions never overwritten, a warmup request when `warmup_inputs` is given,
    `check_ops` (no Python ops, nothing the stock model server lacks) and `check_batchable`
    (every signature servable with the model server's batching on).
    """
    model_root = os.path.join(export_dir_root, name)
    tf.io.gfile.makedirs(model_root)
    tmp = os.path.join(model_root, f".tmp-{uuid.uuid4().hex}")  # not an integer: servers skip it
    try:
        tf.saved_model.save(module, tmp, signatures=signatures)
        if warmup_inputs is not None:
            write_warmup_requests(tmp, name, inputs=warmup_inputs, signature_name=warmup_signature)
        check_ops(tmp)
        check_batchable(tmp)
        for _ in range(100):  # another exporter may claim the same version: take the next
            existing = _versions(model_root)
            target = os.path.join(model_root, str((existing[-1] if existing else 0) + 1))
            try:
                tf.io.gfile.rename(tmp, target, overwrite=False)
                return target
            except (tf.errors.AlreadyExistsError, OSError):
                continue
        raise RuntimeError(f"could not claim a version under {model_root}")
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)


