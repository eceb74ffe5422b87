"""SavedModel versions served by name: version policy, signatures, request validation.

Generic over exports: a signature's inputs and outputs are read from the loaded SavedModel (the
concrete function's input specs, and the `SignatureDef`s of `saved_model.pb` for metadata), so
captioners, VQA, ranker and video exports are served without code that knows about them.

Requests are validated before anything runs, as TF Serving does: every input present and no
unknown one, dtype equal to the signature's, rank and every fixed dimension matching, and the
element count bounded *before* `tf.make_ndarray` allocates (a TensorProto can declare a shape of
10^12 elements in a few bytes). Failures raise `ServingError` with the gRPC code TF Serving uses:
INVALID_ARGUMENT for a bad request, NOT_FOUND for an unknown model / version / label / signature.

Example:
```python
registry = ModelRegistry(protos.read_model_server_config("serving/models.config"))
registry.refresh()
servable = registry.get("lrcn_2f")            # the highest aspired version
signature = servable.signature("serving_default")
outputs = signature.run(signature.validate(request.inputs))
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


def _element_size(dtype: tf.DType) -> int:
    return 1 if dtype == tf.string else dtype.size


class Signature:
    """One callable signature: validation of request tensors, then the run.

    Args:
        name: signature name.
        function: the loaded concrete function (`loaded.signatures[name]`).
        max_tensor_bytes: bound on any input's declared size (elements × item size; strings
            count one byte per element here, their payload is bounded by the message size).
    """

    def __init__(self, name: str, function, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
        self.name = name
        self.function = function
        self.max_tensor_bytes = max_tensor_bytes
        self.inputs: dict[str, tf.TensorSpec] = dict(function.structured_input_signature[1])
        self.outputs: dict[str, tf.TensorSpec] = dict(function.structured_outputs)

    @property
    def batchable(self) -> bool:
        """True when every input has a leading batch dimension of unknown size (dim 0)."""
        return all(spec.shape.rank and spec.shape[0] is None for spec in self.inputs.values())

    def validate(self, tensors) -> dict[str, np.ndarray]:
        """`{name: TensorProto}` -> `{name: ndarray}`, or `ServingError(INVALID_ARGUMENT)`."""
        missing = sorted(set(self.inputs) - set(tensors))
        unknown = sorted(set(tensors) - set(self.inputs))
        if missing or unknown:
            raise invalid(f"signature '{self.name}' takes inputs {sorted(self.inputs)}; "
                          f"missing {missing}, unknown {unknown}")
        arrays = {}
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
            if int(np.prod(dims, dtype=np.float64)) * _element_size(spec.dtype) > \
                    self.max_tensor_bytes:
                raise invalid(f"input '{key}' declares shape {dims}: more than "
                              f"{self.max_tensor_bytes} bytes")
            try:
                array = tf.make_ndarray(proto)
            except Exception as error:  # malformed content (wrong byte count, ...)
                raise invalid(f"input '{key}' is not a valid tensor: {error}") from None
            if list(array.shape) != dims:
                raise invalid(f"input '{key}' holds {array.size} values for shape {dims}")
            arrays[key] = array
        return arrays

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


def load_servable(name: str, version: int, path: str,
                  max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Servable:
    loaded = tf.saved_model.load(path, tags=["serve"])
    signatures = {key: Signature(key, fn, max_tensor_bytes)
                  for key, fn in loaded.signatures.items()}
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
        max_tensor_bytes: per-input bound passed to each `Signature`.
    """

    def __init__(self, config, base_path_map: tuple[str, str] | None = None,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES):
        self._lock = threading.Lock()
        self._servables: dict[str, dict[int, Servable]] = {}
        self.base_path_map = base_path_map
        self.max_tensor_bytes = max_tensor_bytes
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
                                                      self.max_tensor_bytes)
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
