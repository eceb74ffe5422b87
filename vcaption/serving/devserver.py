"""A development model server speaking TF Serving's gRPC API (and its REST form) over SavedModels.

    python -m vcaption.serving.devserver --model_config_file serving/models.config \\
        --models_dir saved_models [--port 8500] [--rest_api_port 8501] \\
        [--enable_batching --batching_parameters_file serving/batching_parameters.txt]

prints `serving gRPC on 127.0.0.1:<port>` once every configured model that has versions is
loaded. It implements, from the `tensorflow-serving-api` protos:

* `tensorflow.serving.PredictionService/Predict` and `/GetModelMetadata` (the `signature_def`
  metadata, a `SignatureDefMap` packed in an `Any`, exactly as the model server answers);
* `tensorflow.serving.ModelService/GetModelStatus`;
* REST on `--rest_api_port`: `POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict` with
  `instances` (row) or `inputs` (columnar) JSON, binary strings as `{"b64": ...}`;
  `GET /v1/models/<name>` (status) and `GET /v1/models/<name>/metadata`.

Behaviour follows the model server: `model_version_policy` (latest N / all / specific),
`version_labels`, new versions picked up by polling `--file_system_poll_wait_seconds`, request
batching from a `BatchingParameters` file with its refusals (a scalar input, inputs disagreeing
on dimension 0, "Task size N is larger than maximum input batch size M"; see `batching`), requests
without a deadline served as there. Bad requests get INVALID_ARGUMENT (unknown inputs, wrong dtype
or shape, value counts that do not fill the declared shape, bytes that are not images — the
in-graph checks raise InvalidArgumentError), unknown model / version / label / signature get
NOT_FOUND, and the server keeps serving; REST answers use the model server's status -> HTTP
mapping, so no client error is a 500. Before anything is read or decoded, requests are bounded:
`--max_request_bytes` on the serialized request (gRPC itself refuses messages over twice that
with RESOURCE_EXHAUSTED before they are buffered) and on each input once its values fill
its shape (not below 64 MiB),
`--max_string_elements` on the strings (images) one request may declare (see `servables`). A
REST body must arrive whole within `--rest_api_timeout_in_ms`. It binds 127.0.0.1 unless
`--host` says otherwise (the container's model server is the one to expose). Where it still
differs from the model server: serving/README.md, "Differences from the model server".

`--models_dir DIR` rewrites `base_path`s under `/models` (where the compose file mounts
`saved_models/`) to DIR, so the deployment's `models.config` serves the local exports unchanged.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import json
import re
import sys
import threading
import time
import traceback

import grpc
import numpy as np
import tensorflow as tf

from vcaption import cli
from vcaption.runtime import logs
from vcaption.serving import protos
from vcaption.serving.batching import BatchOptions, BatchScheduler
from vcaption.serving.servables import (DEFAULT_MAX_STRING_ELEMENTS, DEFAULT_MAX_TENSOR_BYTES,
                                        ModelRegistry, ServingError, invalid)

DEFAULT_MAX_REQUEST_BYTES = 64 << 20
DEFAULT_REST_TIMEOUT_MS = 30_000  # the model server's --rest_api_timeout_in_ms default
# gRPC reports "no deadline" as ~1.8e10 s remaining, more than a lock wait accepts
# (OverflowError): such a request waits for its batch without a timeout, as in the model server.
_NO_DEADLINE = threading.TIMEOUT_MAX / 2
_INT64_MAX = 2 ** 63 - 1


def fill_tensor_proto(proto, array: np.ndarray) -> None:
    """Writes `array` into the `TensorProto` `proto` as the model server does: numbers as raw
    `tensor_content` bytes, strings as `string_val`.

    Equal to `CopyFrom(tf.make_tensor_proto(array))` for what `tf.make_ndarray` reads back, at a
    fraction of its cost (it re-checks and converts every element in Python), which matters on the
    response path of every request.
    """
    dtype = tf.as_dtype(array.dtype) if array.dtype != object else tf.string
    proto.dtype = dtype.as_datatype_enum
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if dtype == tf.string:
        proto.string_val.extend(x if isinstance(x, bytes) else str(x).encode() for x in array.ravel())
    else:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()


class DevServer:
    """The model registry, batching and request handling behind the gRPC and REST front ends.

    Args:
        config: a `ModelServerConfig`.
        batching: `BatchOptions` to batch requests, or None.
        models_dir: replaces the `/models` prefix of every base path (see module docstring).
        max_request_bytes: requests (serialized `PredictRequest` size) above this are refused.
        max_string_elements: requests declaring more string elements in all are refused.
        rest_timeout: seconds a REST request may take, reading its body included (the model
            server's `--rest_api_timeout_in_ms`).
    """

    def __init__(self, config, batching: BatchOptions | None = None, models_dir: str | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_string_elements: int = DEFAULT_MAX_STRING_ELEMENTS,
                 rest_timeout: float = DEFAULT_REST_TIMEOUT_MS / 1000):
        self.registry = ModelRegistry(
            config, ("/models", models_dir) if models_dir else None,
            max_tensor_bytes=max(max_request_bytes, DEFAULT_MAX_TENSOR_BYTES),
            max_string_elements=max_string_elements)
        self.batching = batching
        self.max_request_bytes = max_request_bytes
        self.rest_timeout = rest_timeout
        self._schedulers: dict[tuple, BatchScheduler] = {}
        self._lock = threading.Lock()
        self.codes: dict[str, int] = {}  # answers by status code name, for monitoring / tests
        self._stop = threading.Event()
        self.grpc_server = None
        self.rest_server = None
        self.port = self.rest_port = None

    # ------------------------------------------------------------------------------------------
    # Request handling shared by gRPC and REST.

    def _count(self, code: grpc.StatusCode) -> None:
        with self._lock:
            self.codes[code.name] = self.codes.get(code.name, 0) + 1

    def _resolve(self, model_spec):
        version = model_spec.version.value if model_spec.HasField("version") else None
        return self.registry.get(model_spec.name, version, model_spec.version_label or None)

    def _scheduler(self, servable, signature) -> BatchScheduler | None:
        # Every signature, as the model server batches every signature of every model: one with
        # a scalar input is refused there (BatchOptions.task_size), and so it is here.
        if self.batching is None:
            return None
        key = (servable.name, servable.version, signature.name)
        with self._lock:
            if key not in self._schedulers:
                self._schedulers[key] = BatchScheduler(signature.run, self.batching)
            return self._schedulers[key]

    def predict(self, request, timeout: float | None = None):
        """`PredictRequest` -> `PredictResponse`; raises `ServingError`.

        `timeout`: seconds to wait for the batch (None: no deadline).
        """
        from tensorflow_serving.apis import predict_pb2

        size = request.ByteSize()
        if size > self.max_request_bytes:
            raise invalid(f"request of {size} bytes exceeds the limit of "
                          f"{self.max_request_bytes} bytes")
        servable = self._resolve(request.model_spec)
        signature = servable.signature(request.model_spec.signature_name or "serving_default")
        wanted = list(request.output_filter) or list(signature.outputs)
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown:
            raise invalid(f"output_filter names unknown outputs {unknown}; "
                          f"'{signature.name}' has {sorted(signature.outputs)}")
        shapes = signature.check(request.inputs)
        scheduler = self._scheduler(servable, signature)
        if scheduler is not None:  # batching refusals cost nothing: before the tensors are read
            scheduler.options.task_size(shapes)
        arrays = signature.read(request.inputs)
        if scheduler is None:
            outputs = signature.run(arrays)
        else:
            future = scheduler.submit(arrays)
            try:
                outputs = future.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                   "deadline exceeded while waiting for a batch") from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature.name
        for key in wanted:
            fill_tensor_proto(response.outputs[key], outputs[key])
        return response

    def metadata(self, request):
        """`GetModelMetadataRequest` -> `GetModelMetadataResponse` (signature_def only)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        if list(request.metadata_field) != ["signature_def"]:
            raise invalid(f"metadata_field must be ['signature_def'], got "
                          f"{list(request.metadata_field)}")
        servable = self._resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def status(self, request):
        """`GetModelStatusRequest` -> `GetModelStatusResponse`: AVAILABLE versions."""
        from tensorflow_serving.apis import get_model_status_pb2

        spec = request.model_spec
        versions = self.registry.versions(spec.name)
        if spec.HasField("version") or spec.version_label:
            versions = {self._resolve(spec).version: None}
        if not versions:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"no versions of model '{spec.name}' are loaded")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(versions):
            entry = response.model_version_status.add(
                version=version, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
            entry.status.error_code = 0
        return response

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    def refresh(self) -> None:
        for line in self.registry.refresh():
            print(line, file=sys.stderr, flush=True)

    def _poll(self, seconds: float, config_file: str | None, config_seconds: float) -> None:
        last_config = time.monotonic()
        while not self._stop.wait(seconds):
            if config_file and config_seconds > 0 and \
                    time.monotonic() - last_config >= config_seconds:
                last_config = time.monotonic()
                try:
                    self.registry.set_config(protos.read_model_server_config(config_file))
                except Exception as error:  # keep the old config on a bad edit
                    print(f"ignoring bad {config_file}: {error}", file=sys.stderr, flush=True)
            self.refresh()

    def start(self, port: int = 8500, host: str = "127.0.0.1", rest_port: int | None = None,
              poll_seconds: float = 0, config_file: str | None = None,
              config_poll_seconds: float = 0, max_workers: int = 64) -> "DevServer":
        """Loads the models, starts gRPC (and REST when `rest_port` is not None; 0 = any port).

        Port 0 picks a free port; `self.port` / `self.rest_port` hold the bound ones.
        """
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.refresh()
        # Transport bound: beyond it gRPC answers RESOURCE_EXHAUSTED without buffering the
        # message; between max_request_bytes and it, predict() answers INVALID_ARGUMENT.
        transport = 2 * self.max_request_bytes
        self.grpc_server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=max_workers),
            options=[("grpc.max_receive_message_length", transport),
                     ("grpc.max_send_message_length", transport),
                     ("grpc.so_reuseport", 0)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionServicer(self), self.grpc_server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            _ModelServicer(self), self.grpc_server)
        self.port = self.grpc_server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"cannot bind {host}:{port}")
        self.grpc_server.start()
        if rest_port is not None:
            self.rest_server = _RestServer((host, rest_port), _RestHandler)
            self.rest_server.dev = self
            self.rest_port = self.rest_server.server_address[1]
            threading.Thread(target=self.rest_server.serve_forever, daemon=True).start()
        if poll_seconds > 0:
            threading.Thread(target=self._poll, daemon=True,
                             args=(poll_seconds, config_file, config_poll_seconds)).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=1).wait()
        if self.rest_server is not None:
            self.rest_server.shutdown()
            self.rest_server.server_close()
        for scheduler in self._schedulers.values():
            scheduler.close()


def _answer(dev: DevServer, context, fn, *args):
    """Runs a handler; every failure becomes a status code, nothing escapes to kill the server."""
    try:
        result = fn(*args)
        dev._count(grpc.StatusCode.OK)
        return result
    except ServingError as error:
        code, message = error.code, error.message
    except Exception as error:  # a bug must cost one request, never the server
        traceback.print_exc()
        code, message = grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}"
    dev._count(code)
    context.abort(code, message)


class _PredictionServicer:
    def __init__(self, dev: DevServer):
        self.dev = dev

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        remaining = context.time_remaining()
        timeout = remaining if remaining is not None and remaining < _NO_DEADLINE else None
        return _answer(self.dev, context, self.dev.predict, request, timeout)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(self.dev, context, self.dev.metadata, request)

    def Classify(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Classify is not served; use Predict")

    def Regress(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not served; use Predict")

    def MultiInference(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served")


class _ModelServicer:
    def __init__(self, dev: DevServer):
        self.dev = dev

    def GetModelStatus(self, request, context):  # noqa: N802
        return _answer(self.dev, context, self.dev.status, request)

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "edit the config file; it is polled")


# ----------------------------------------------------------------------------------------------
# REST (TF Serving's JSON API).

# The model server's status -> HTTP mapping (its REST handler's ToHTTPStatusCode).
_HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
                grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.NOT_FOUND: 404,
                grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409,
                grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
                grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
                grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.PERMISSION_DENIED: 403,
                grpc.StatusCode.UNAUTHENTICATED: 401}
_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|"
                   r"/labels/(?P<label>[^/:]+))?(?P<rest>/metadata|:predict)?$")


def _from_json(value, dtype: tf.DType):
    """A JSON value (nested lists, `{"b64": ...}` for bytes) -> ndarray of `dtype`."""
    def unwrap(v):
        if isinstance(v, dict):
            if set(v) != {"b64"} or not isinstance(v["b64"], str):
                raise invalid('a JSON object in a tensor must be {"b64": "<base64 string>"}')
            try:
                return base64.b64decode(v["b64"], validate=True)
            except ValueError:
                raise invalid("bad base64 in a {\"b64\": ...} value") from None
        if isinstance(v, list):
            return [unwrap(x) for x in v]
        return v.encode() if isinstance(v, str) else v

    raw = unwrap(value)
    try:
        if dtype == tf.string:
            array = np.array(raw, dtype=object)
            if any(not isinstance(x, bytes) for x in array.reshape(-1)):
                raise ValueError("string tensors take strings or {\"b64\": ...}")
            return array
        return np.array(raw, dtype=dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError) as error:
        raise invalid(f"cannot read a {dtype.name} tensor from JSON: {error}") from None


def _to_json(name: str, array: np.ndarray):
    if array.dtype == object:
        as_b64 = name.endswith("_bytes")  # TF Serving's rule for binary outputs
        flat = [{"b64": base64.b64encode(x).decode()} if as_b64 else x.decode("utf-8", "replace")
                for x in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


class _RestServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows under a burst of clients, which then see
    # their connections reset instead of an answer.
    request_queue_size = 128


class _RestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        # A socket timeout bounds every read: a stalled upload or an idle keep-alive connection
        # cannot hold a handler thread for longer than a request may take.
        self.timeout = self.server.dev.rest_timeout
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, TimeoutError):  # the client went away: nobody to answer
            self.close_connection = True

    def log_message(self, *args):  # quiet: the load test would flood stderr
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client is gone; nothing to tell it
            self.close_connection = True

    def _fail(self, code: grpc.StatusCode, message: str, http_status: int | None = None) -> None:
        self.server.dev._count(code)
        self._reply(http_status or _HTTP_STATUS.get(code, 500), {"error": message})

    def _respond(self, handler, *args) -> None:
        """Runs `handler(*args)` -> JSON body; every failure becomes a status, none a dropped
        connection."""
        try:
            body = handler(*args)
        except ServingError as error:
            return self._fail(error.code, error.message)
        except RecursionError:  # JSON nested deeper than Python recurses
            return self._fail(grpc.StatusCode.INVALID_ARGUMENT, "JSON nested too deeply")
        except Exception as error:  # a bug must cost one request, never the server
            traceback.print_exc()
            return self._fail(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        self.server.dev._count(grpc.StatusCode.OK)
        self._reply(200, body)

    def _spec(self, match, signature_name=""):
        from tensorflow_serving.apis import model_pb2

        if not isinstance(signature_name, str):
            raise invalid(f'"signature_name" must be a string, got {json.dumps(signature_name)}')
        spec = model_pb2.ModelSpec(name=match["name"], signature_name=signature_name)
        if match["version"]:
            version = int(match["version"])
            if version > _INT64_MAX:
                raise invalid(f"version {match['version']} is out of range (int64)")
            spec.version.value = version
        if match["label"]:
            spec.version_label = match["label"]
        return spec

    def do_GET(self):  # noqa: N802
        match = _PATH.match(self.path)
        if not match or match["rest"] == ":predict":
            return self._fail(grpc.StatusCode.NOT_FOUND, f"no route {self.path}")
        self._respond(self._get, match)

    def _get(self, match) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

        dev = self.server.dev
        if match["rest"] == "/metadata":
            response = dev.metadata(get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec=self._spec(match), metadata_field=["signature_def"]))
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            return {"model_spec": json_format.MessageToDict(response.model_spec),
                    "metadata": {"signature_def": json_format.MessageToDict(signature_map)}}
        response = dev.status(get_model_status_pb2.GetModelStatusRequest(
            model_spec=self._spec(match)))
        return json_format.MessageToDict(response)

    def do_POST(self):  # noqa: N802
        dev = self.server.dev
        if self.headers.get("Transfer-Encoding"):
            # Its chunks would be read as the next request; with Content-Length they cannot be.
            self.close_connection = True
            return self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                              "Transfer-Encoding is not supported; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return self._fail(grpc.StatusCode.INVALID_ARGUMENT, "bad Content-Length")
        if length > dev.max_request_bytes:
            self.close_connection = True
            return self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                              f"request of {length} bytes exceeds {dev.max_request_bytes}")
        try:
            payload = self._read_body(length, dev.rest_timeout)
        except TimeoutError:
            self.close_connection = True
            return self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                              f"the body did not arrive within {dev.rest_timeout:g} s", 408)
        if len(payload) != length:  # the client closed early: never run a partial body
            self.close_connection = True
            return self._fail(grpc.StatusCode.INVALID_ARGUMENT,
                              f"truncated body: {len(payload)} of {length} bytes")
        match = _PATH.match(self.path)
        if not match or match["rest"] != ":predict":
            return self._fail(grpc.StatusCode.NOT_FOUND, f"no route POST {self.path}")
        self._respond(self._predict, dev, match, payload)

    def _read_body(self, length: int, seconds: float) -> bytes:
        """Up to `length` bytes (fewer if the client closes early) within `seconds` in all: a
        client trickling a byte now and then cannot hold the handler either."""
        deadline = time.monotonic() + seconds
        chunks, received = [], 0
        try:
            while received < length:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(length - received, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(chunks)

    def _predict(self, dev: DevServer, match, payload: bytes) -> dict:
        from tensorflow_serving.apis import predict_pb2

        try:
            body = json.loads(payload)
        except ValueError as error:
            raise invalid(f"body is not JSON: {error}") from None
        if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
            raise invalid('the body needs exactly one of "instances" (row) or "inputs" (columnar)')
        request = predict_pb2.PredictRequest(
            model_spec=self._spec(match, body.get("signature_name", "")))
        signature = dev._resolve(request.model_spec).signature(
            request.model_spec.signature_name or "serving_default")
        specs = signature.inputs
        if "instances" in body:
            rows = body["instances"]
            if not isinstance(rows, list) or not rows:
                raise invalid('"instances" must be a non-empty list')
            if all(isinstance(r, dict) and "b64" not in r for r in rows):
                columns = {k: [r.get(k) for r in rows] for k in set().union(*rows)}
            elif len(specs) == 1:
                columns = {next(iter(specs)): rows}
            else:
                raise invalid(f"instances must be objects naming the inputs {sorted(specs)}")
        else:
            columns = body["inputs"]
            if not isinstance(columns, dict):
                if len(specs) != 1:
                    raise invalid(f'"inputs" must be an object naming {sorted(specs)}')
                columns = {next(iter(specs)): columns}
        for key, value in columns.items():
            if key not in specs:
                raise invalid(f"unknown input '{key}'; '{signature.name}' takes {sorted(specs)}")
            request.inputs[key].CopyFrom(tf.make_tensor_proto(_from_json(value, specs[key].dtype)))
        response = dev.predict(request, timeout=dev.rest_timeout)
        outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
        if "inputs" in body:
            return {"outputs": {k: _to_json(k, v) for k, v in outputs.items()}}
        scalars = sorted(k for k, v in outputs.items() if v.ndim == 0)
        if scalars:  # a scalar output has no rows to hand out
            raise invalid(f"outputs {scalars} have no batch dimension: use the columnar "
                          '"inputs" form')
        rows = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            (key, value), = outputs.items()
            return {"predictions": _to_json(key, value)}
        as_json = {k: _to_json(k, v) for k, v in outputs.items()}
        return {"predictions": [{k: v[i] for k, v in as_json.items()} for i in range(rows)]}


def build_parser():
    # The flags keep TF Serving's own names (--model_config_file, --rest_api_port,
    # --enable_batching, ...), underscores included, against the kebab-case rule of every other
    # vcaption command (vcaption/cli.py): this server is a development stand-in for the stock
    # `tensorflow_model_server`, and the same command line must work with either. Do not rename
    # them. The few flags the model server lacks (--models_dir, --host, --max_request_bytes,
    # --max_string_elements, --verbose) follow its style.
    parser = cli.make_parser("python -m vcaption.serving.devserver", __doc__.split("\n\n")[0])
    parser.add_argument("--model_config_file", required=True, help="text ModelServerConfig")
    parser.add_argument("--models_dir", default=None,
                        help="serve base paths under /models from this directory instead")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port)")
    parser.add_argument("--rest_api_port", type=int, default=0,
                        help="REST port; 0 disables REST, as in the model server")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--enable_batching", action="store_true", help="batch requests server-side")
    parser.add_argument("--batching_parameters_file", default=None,
                        help="text BatchingParameters (default: TF Serving's defaults)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="poll base paths for new versions every N s (0: load once)")
    parser.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                        help="re-read the config file every N s (0: never)")
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="refuse larger requests with INVALID_ARGUMENT")
    parser.add_argument("--max_string_elements", type=int, default=DEFAULT_MAX_STRING_ELEMENTS,
                        help="refuse requests declaring more string elements (images, frames) "
                             "with INVALID_ARGUMENT")
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=DEFAULT_REST_TIMEOUT_MS,
                        help="time a REST request may take, reading its body included")
    parser.add_argument("--grpc_max_threads", type=int, default=64, help="gRPC worker threads")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                        help="threads one op may use (0: TensorFlow's default, all cores)")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                        help="ops run at once in one session run (0: TensorFlow's default)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    # As in the model server, these size TensorFlow's thread pools and must be set before any op
    # runs. On a small CPU host with batching, 1 and 1 leave the cores to the batch threads and
    # the request handling: a batch run by one thread does not spin the other cores, which the
    # gRPC side needs (serving/batching_parameters_cpu.txt has the measurements).
    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)

    batching = None
    if args.enable_batching:
        batching = (BatchOptions.from_proto(protos.read_batching_parameters(
            args.batching_parameters_file)) if args.batching_parameters_file else BatchOptions())
    dev = DevServer(protos.read_model_server_config(args.model_config_file), batching,
                    args.models_dir, args.max_request_bytes, args.max_string_elements,
                    args.rest_api_timeout_in_ms / 1000)
    dev.start(args.port, args.host,
              rest_port=args.rest_api_port if args.rest_api_port else None,
              poll_seconds=args.file_system_poll_wait_seconds,
              config_file=args.model_config_file,
              config_poll_seconds=args.model_config_file_poll_wait_seconds,
              max_workers=args.grpc_max_threads)
    print(f"serving gRPC on {args.host}:{dev.port}"
          + (f", REST on {args.host}:{dev.rest_port}" if dev.rest_port else "")
          + (f", batching {batching}" if batching else ""), flush=True)
    try:
        dev.grpc_server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        dev.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
