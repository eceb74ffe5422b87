"""SavedModel versions served by name: version policy, signatures, request validation.

Generic over exports: a signature's inputs and outputs are read from the loaded SavedModel (the
concrete function's input specs, and the `SignatureDef`s of `saved_model.pb` for metadata), so
captioners, VQA, ranker and video exports are served without code that knows about them.

Requests are validated before anything runs, as TF Serving does: every input present and no
unknown one, dtype equal to the signature's, rank and every fixed dimension matching. A
TensorProto declares its shape apart from its values, so a few bytes can declare 10^12 elements,
and TF Serving's `Tensor::FromProto` repeats the last value to fill the shape: `check` bounds what
a request declares *before* anything is allocated or decoded:

* the values must be as many as the shape's elements, or one value that fills the shape (what
  `tf.make_tensor_proto(value, shape=...)` writes); TF Serving also pads two values out to a
  thousand, or truncates, which no client means, so those are refused here;
* each input's size once filled out is bounded by `max_tensor_bytes`, strings counted at their
  length plus the 24 bytes of a `tf.string` element (not one byte each);
* the string elements of a request, each possibly an image to decode, are bounded by
  `max_string_elements` (a 1 KB request declaring 8,000 copies of one JPEG is refused);
* a batch of zero rows is refused (TF Serving hands it to the model, whose answer depends on its
  ops: a convolution refuses it, a batch of others hides it).

Failures raise `ServingError` with the gRPC code TF Serving uses: INVALID_ARGUMENT for a bad
request, NOT_FOUND for an unknown model / version / label / signature.

Example:
```python
registry = ModelRegistry(protos.read_model_server_config("serving/models.config"))
registry.refresh()
servable = registry.get("lrcn_2f")            # the highest aspired version
signature = servable.signature("serving_default")
signature.check(request.inputs)               # bounded: nothing allocated yet
outputs = signature.run(signature.read(request.inputs))
```
"""

from __future__ import annotations

import dataclasses
import os
import threading

import grpc
import numpy as np
import tensorflow as tf

# Signature entries TF2 SavedModels carry that are not callable signatures.
_INTERNAL_SIGNATURES = ("__saved_model_init_op",)
DEFAULT_MAX_TENSOR_BYTES = 64 << 20
# Each string element may be an image the graph decodes (~200 KB at 256x256, more in float):
# 1024 covers 32 videos of 32 frames, the largest batch of the deployment's batching files.
DEFAULT_MAX_STRING_ELEMENTS = 1024
# A tf.string element is a 24-byte tstring plus its bytes: the cost of one element in memory.
_STRING_ELEMENT_BYTES = 24
# The repeated field holding a TensorProto's values, by dtype (tensorflow/core/framework/
# tensor.proto), and how many of its entries make one element.
_VALUE_FIELDS = {
    tf.string: ("string_val", 1), tf.float32: ("float_val", 1), tf.float64: ("double_val", 1),
    tf.int32: ("int_val", 1), tf.int16: ("int_val", 1), tf.int8: ("int_val", 1),
    tf.uint8: ("int_val", 1), tf.uint16: ("int_val", 1), tf.int64: ("int64_val", 1),
    tf.uint32: ("uint32_val", 1), tf.uint64: ("uint64_val", 1), tf.bool: ("bool_val", 1),
    tf.float16: ("half_val", 1), tf.bfloat16: ("half_val", 1),
    tf.complex64: ("scomplex_val", 2), tf.complex128: ("dcomplex_val", 2),
}


class ServingError(Exception):
    """A request failure with the gRPC status code to answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def _status_code(error: tf.errors.OpError) -> grpc.StatusCode:
    """TensorFlow's error codes are gRPC's (both are google.rpc.Code)."""
    for code in grpc.StatusCode:
        if code.value[0] == error.error_code:
            return code
    return grpc.StatusCode.INTERNAL


def _op_error_message(error: tf.errors.OpError) -> str:
    """The useful part of a graph error: what failed, without the Python trace of the tracing."""
    lines = [line for line in error.message.splitlines()
             if line.strip() and not line.startswith(("Graph execution error", "Detected at node",
                                                      "  File ")) and "[[" not in line]
    return " ".join(lines) or error.message


def _value_count(key: str, proto, dtype: tf.DType, elements: int) -> int:
    """How many values `proto` holds, checked against the `elements` its shape declares."""
    if proto.tensor_content:
        if dtype == tf.string or len(proto.tensor_content) != elements * dtype.size:
            raise invalid(f"input '{key}' declares {elements} {dtype.name} elements but its "
                          f"tensor_content holds {len(proto.tensor_content)} bytes")
        return elements
    field, per_element = _VALUE_FIELDS.get(dtype, (None, 1))
    stray = [f.name for f, _ in proto.ListFields() if f.name.endswith("_val") and f.name != field]
    if field is None or stray:
        raise invalid(f"input '{key}' of dtype {dtype.name} holds values in {stray or 'no field'}")
    count, extra = divmod(len(getattr(proto, field)), per_element)
    if extra or count not in (elements, 1) or (count == 1 and elements == 0):
        raise invalid(f"input '{key}' declares {elements} elements but holds {count} values "
                      f"(give one value per element, or one value to fill the shape)")
    return count


def _filled_bytes(proto, dtype: tf.DType, elements: int, count: int) -> int:
    """Bytes of the tensor once its values fill its shape (a single value is repeated)."""
    if dtype != tf.string:
        return elements * dtype.size
    lengths = [len(value) for value in proto.string_val]
    payload = lengths[0] * elements if count == 1 and elements != 1 else sum(lengths)
    return payload + _STRING_ELEMENT_BYTES * elements


class Signature:
    """One callable signature: validation of request tensors, then the run.

    Args:
        name: signature name.
        function: the loaded concrete function (`loaded.signatures[name]`).
        max_tensor_bytes: bound on any input's size once its values fill its shape.
        max_string_elements: bound on a request's string elements, all inputs together.
    """

    def __init__(self, name: str, function, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
                 max_string_elements: int = DEFAULT_MAX_STRING_ELEMENTS):
        self.name = name
        self.function = function
        self.max_tensor_bytes = max_tensor_bytes
        self.max_string_elements = max_string_elements
        self.inputs: dict[str, tf.TensorSpec] = dict(function.structured_input_signature[1])
        self.outputs: dict[str, tf.TensorSpec] = dict(function.structured_outputs)

    def check(self, tensors) -> dict[str, list[int]]:
        """`{name: TensorProto}` -> `{name: declared dims}`, or `ServingError(INVALID_ARGUMENT)`;
        reads nothing but the protos' headers and value counts (see the module docstring)."""
        missing = sorted(set(self.inputs) - set(tensors))
        unknown = sorted(set(tensors) - set(self.inputs))
        if missing or unknown:
            raise invalid(f"signature '{self.name}' takes inputs {sorted(self.inputs)}; "
                          f"missing {missing}, unknown {unknown}")
        shapes, string_elements = {}, 0
        for key, spec in self.inputs.items():
            proto = tensors[key]
            if proto.dtype != spec.dtype.as_datatype_enum:
                try:
                    got = tf.dtypes.as_dtype(proto.dtype).name
                except TypeError:
                    got = f"unknown dtype enum {proto.dtype}"
                raise invalid(f"input '{key}' of '{self.name}' expects {spec.dtype.name} "
                              f"but got {got}")
            if proto.tensor_shape.unknown_rank:
                raise invalid(f"input '{key}' has an unknown rank")
            dims = [d.size for d in proto.tensor_shape.dim]
            if any(d < 0 for d in dims):
                raise invalid(f"input '{key}' has a negative dimension: {dims}")
            if spec.shape.rank is not None and (len(dims) != spec.shape.rank or any(
                    want is not None and want != got for want, got in zip(spec.shape, dims))):
                raise invalid(f"input '{key}' of '{self.name}' expects shape "
                              f"{spec.shape.as_list()} but got {dims}")
            if spec.shape.rank and spec.shape[0] is None and dims[0] == 0:
                raise invalid(f"input '{key}' of '{self.name}' is an empty batch (dimension 0 "
                              f"is 0 in shape {dims}); send at least one row")
            elements = float(np.prod(dims, dtype=np.float64))  # float: 10^30 must not wrap
            if elements * (_STRING_ELEMENT_BYTES if spec.dtype == tf.string else spec.dtype.size) \
                    > self.max_tensor_bytes:
                raise invalid(f"input '{key}' declares shape {dims}: more than "
                              f"{self.max_tensor_bytes} bytes")
            count = _value_count(key, proto, spec.dtype, int(elements))
            size = _filled_bytes(proto, spec.dtype, int(elements), count)
            if size > self.max_tensor_bytes:
                raise invalid(f"input '{key}' of shape {dims} fills {size} bytes, more than "
                              f"{self.max_tensor_bytes}")
            if spec.dtype == tf.string:
                string_elements += int(elements)
            shapes[key] = dims
        if string_elements > self.max_string_elements:
            raise invalid(f"the request declares {string_elements} string elements (images, "
                          f"frames, sentences), more than {self.max_string_elements}")
        return shapes

    def read(self, tensors) -> dict[str, np.ndarray]:
        """`{name: TensorProto}` (passed by `check`) -> `{name: ndarray}`."""
        arrays = {}
        for key in self.inputs:
            try:
                arrays[key] = tf.make_ndarray(tensors[key])
            except Exception as error:  # malformed content `check` does not look at
                raise invalid(f"input '{key}' is not a valid tensor: {error}") from None
        return arrays

    def validate(self, tensors) -> dict[str, np.ndarray]:
        """`check`, then `read`."""
        self.check(tensors)
        return self.read(tensors)

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature; model errors become `ServingError` with TensorFlow's code."""
        try:
            feeds = {k: tf.constant(v, dtype=self.inputs[k].dtype) for k, v in arrays.items()}
            outputs = self.function(**feeds)
        except tf.errors.OpError as error:  # e.g. in-graph image checks: InvalidArgumentError
            raise ServingError(_status_code(error), _op_error_message(error)) from None
        except (TypeError, ValueError) as error:  # shapes the function's trace refuses
            raise invalid(f"'{self.name}': {error}") from None
        return {k: v.numpy() for k, v in outputs.items()}


@dataclasses.dataclass
class Servable:
    """One loaded version of a model."""
    name: str
    version: int
    path: str
    loaded: object
    signatures: dict
    signature_defs: dict  # name -> meta_graph_pb2.SignatureDef (for GetModelMetadata)

    def signature(self, name: str) -> Signature:
        if name not in self.signatures:
            raise not_found(f"signature '{name}' not found in model '{self.name}' version "
                            f"{self.version}; it has {sorted(self.signatures)}")
        return self.signatures[name]


def read_signature_defs(export_dir: str) -> dict:
    """`SignatureDef`s of the `serve` meta graph of `export_dir/saved_model.pb`."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items()
                    if k not in _INTERNAL_SIGNATURES}
    return {}


def load_servable(name: str, version: int, path: str, **limits) -> Servable:
    """Loads one version; `limits` are `Signature`'s `max_tensor_bytes` / `max_string_elements`."""
    loaded = tf.saved_model.load(path, tags=["serve"])
    signatures = {key: Signature(key, fn, **limits) for key, fn in loaded.signatures.items()}
    return Servable(name, version, path, loaded, signatures, read_signature_defs(path))


def list_versions(base_path: str) -> list[int]:
    """Integer version directories under `base_path` (hidden temporaries are skipped)."""
    if not tf.io.gfile.isdir(base_path):
        return []
    names = [entry.rstrip("/") for entry in tf.io.gfile.listdir(base_path)]
    return sorted(int(n) for n in names
                  if n.isdigit() and tf.io.gfile.exists(os.path.join(base_path, n,
                                                                     "saved_model.pb")))


def aspired_versions(model_config, available: list[int]) -> list[int]:
    """The versions `model_version_policy` asks for among `available` (TF Serving's rules)."""
    policy = model_config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return list(available)
    if kind == "specific":
        return sorted(set(policy.specific.versions) & set(available))
    num = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    return sorted(available)[-num:]


class ModelRegistry:
    """The models of a `ModelServerConfig` and their loaded versions, refreshed on demand.

    Args:
        config: a `ModelServerConfig` (its `model_config_list`).
        base_path_map: optional (prefix, replacement) applied to every `base_path`, so the
            config written for the container (`/models/<name>`) serves a local directory.
        limits: `max_tensor_bytes` / `max_string_elements` for each `Signature`.
    """

    def __init__(self, config, base_path_map: tuple[str, str] | None = None, **limits):
        self._lock = threading.Lock()
        self._servables: dict[str, dict[int, Servable]] = {}
        self.base_path_map = base_path_map
        self.limits = limits
        self.set_config(config)

    def set_config(self, config) -> None:
        if config.WhichOneof("config") != "model_config_list":
            raise ValueError("only model_config_list configs are supported")
        models = {}
        for model in config.model_config_list.config:
            if not model.name or not model.base_path:
                raise ValueError(f"model config needs a name and a base_path: {model}")
            if model.name in models:
                raise ValueError(f"model '{model.name}' is configured twice")
            models[model.name] = model
        with self._lock:
            self.models = models
            for gone in set(self._servables) - set(models):
                del self._servables[gone]

    def base_path(self, model_config) -> str:
        path = model_config.base_path
        if self.base_path_map and path.startswith(self.base_path_map[0]):
            path = self.base_path_map[1] + path[len(self.base_path_map[0]):]
        return path

    def refresh(self) -> list[str]:
        """Loads newly aspired versions and unloads the rest; returns log lines."""
        log = []
        for name, model in list(self.models.items()):
            base = self.base_path(model)
            want = aspired_versions(model, list_versions(base))
            have = dict(self._servables.get(name, {}))
            for version in want:
                if version not in have:
                    try:
                        have[version] = load_servable(name, version,
                                                      os.path.join(base, str(version)),
                                                      **self.limits)
                        log.append(f"loaded {name} version {version} from {base}")
                    except Exception as error:  # a broken export must not stop the others
                        log.append(f"failed to load {name} version {version}: {error}")
            for version in set(have) - set(want):
                del have[version]
                log.append(f"unloaded {name} version {version}")
            with self._lock:
                if name in self.models:
                    self._servables[name] = have
        return log

    def versions(self, name: str) -> dict[int, Servable]:
        with self._lock:
            if name not in self.models:
                raise not_found(f"Servable not found for request: model '{name}' is not served; "
                                f"models: {sorted(self.models)}")
            return dict(self._servables.get(name, {}))

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a `ModelSpec`: a version, a label, or (neither) the latest."""
        versions = self.versions(name)
        if label:
            labels = self.models[name].version_labels
            if label not in labels:
                raise not_found(f"Servable not found for request: label '{label}' of '{name}'")
            version = labels[label]
        if version is None:
            if not versions:
                raise not_found(f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise not_found(f"Servable not found for request: Specific({name}, {version}); "
                            f"available versions {sorted(versions)}")
        return versions[version]
