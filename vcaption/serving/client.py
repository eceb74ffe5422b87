"""A TF Serving client: gRPC `PredictionService.Predict` and the REST `:predict` form.

    python -m vcaption.serving.client --server localhost:8500 --model-name lrcn_2f \\
        [--signature serving_default] [--version N] [--batch-size 16] [--timeout 30] \\
        [--input temperature=0.8 --input num_samples=8] [--rest] FILES...

reads FILES as encoded bytes, sends them `--batch-size` per request as the signature's string
input (`--image-input`, default `image_bytes`), and prints one JSON line per file with that row of
every output (captions and scores for a captioner). `--input NAME=VALUE` adds other inputs: a
value for a scalar input is sent as is, for an input with a batch dimension it is repeated once
per file (e.g. the same question for every image). Its dtype comes from the model's metadata.
`--rest` talks to the REST port (8501) instead of gRPC (8500).

Every call has a deadline (`timeout`) and is retried with exponential backoff (with jitter) when
the server answers UNAVAILABLE (down, restarting, batch queue full) — never on INVALID_ARGUMENT
or NOT_FOUND, which a retry cannot fix.

Example:
```python
with ServingClient("localhost:8500") as client:
    out = client.predict("lrcn_2f", {"image_bytes": [open("cat.jpg", "rb").read()]})
    out["captions"][0]   # array of N byte strings, best first
```
"""

from __future__ import annotations

import base64
import json
import random
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf

from vcaption import cli
from vcaption.runtime import logs

DEFAULT_MAX_MESSAGE_BYTES = 128 << 20


class ServingClient:
    """gRPC client of TF Serving's `PredictionService` and `ModelService`.

    Args:
        server: "host:port" of the gRPC endpoint.
        timeout: deadline of each attempt, in seconds.
        retries: extra attempts after UNAVAILABLE.
        backoff: first wait in seconds; doubles with each retry (plus up to 50% jitter).
        max_message_bytes: largest request/response this channel sends or accepts.
    """

    def __init__(self, server: str, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.1, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 sleep=time.sleep):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.timeout, self.retries, self.backoff, self._sleep = timeout, retries, backoff, sleep
        self.channel = grpc.insecure_channel(server, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.channel.close()

    def call(self, method, request, timeout: float | None = None):
        """Calls a stub method with a deadline, retrying UNAVAILABLE with exponential backoff."""
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=timeout or self.timeout)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
                delay = self.backoff * 2 ** attempt
                self._sleep(delay * (1 + 0.5 * random.random()))

    @staticmethod
    def model_spec(model: str, signature: str = "", version: int | None = None,
                   label: str | None = None):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=model, signature_name=signature)
        if version is not None:
            spec.version.value = version
        if label:
            spec.version_label = label
        return spec

    def predict_request(self, model: str, inputs: dict, signature: str = "serving_default",
                        version: int | None = None, label: str | None = None,
                        output_filter=()):
        """A `PredictRequest`; `inputs` values are anything `tf.make_tensor_proto` takes."""
        from tensorflow.core.framework import tensor_pb2
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(
            model_spec=self.model_spec(model, signature, version, label),
            output_filter=list(output_filter))
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                         else tf.make_tensor_proto(value))
        return request

    def predict(self, model: str, inputs: dict, signature: str = "serving_default",
                version: int | None = None, label: str | None = None, output_filter=(),
                timeout: float | None = None) -> dict[str, np.ndarray]:
        """Runs `signature` of `model`; returns its outputs as arrays."""
        request = self.predict_request(model, inputs, signature, version, label, output_filter)
        response = self.call(self.prediction.Predict, request, timeout)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def metadata(self, model: str, version: int | None = None) -> dict:
        """`{signature name: SignatureDef}` from GetModelMetadata."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(model, version=version), metadata_field=["signature_def"])
        response = self.call(self.prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def status(self, model: str, version: int | None = None) -> dict[int, str]:
        """`{version: state name}` from GetModelStatus."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=self.model_spec(model, version=version))
        response = self.call(self.models.GetModelStatus, request)
        state = get_model_status_pb2.ModelVersionStatus.State.Name
        return {s.version: state(s.state) for s in response.model_version_status}


def _json_value(value):
    """ndarray/bytes -> JSON for the REST API: bytes as {"b64": ...}."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    return value.item() if isinstance(value, np.generic) else value


def rest_predict(server: str, model: str, inputs: dict, signature: str = "serving_default",
                 version: int | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.1, sleep=time.sleep) -> dict:
    """POSTs the columnar form to `http://server/v1/models/<model>[/versions/<v>]:predict`.

    Returns the `outputs` object (strings decoded as UTF-8, as TF Serving sends them). Retries
    HTTP 503 and refused connections with exponential backoff; raises `RuntimeError` carrying
    the HTTP status and the server's error message otherwise.
    """
    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
    body = json.dumps({"signature_name": signature,
                       "inputs": {k: _json_value(v) for k, v in inputs.items()}}).encode()
    url = f"http://{server}{path}:predict"
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())["outputs"]
        except urllib.error.HTTPError as error:
            message = error.read().decode(errors="replace")
            if error.code != 503 or attempt == retries:
                raise RuntimeError(f"HTTP {error.code}: {message}") from None
        except urllib.error.URLError as error:  # connection refused: the server is not up yet
            if attempt == retries:
                raise RuntimeError(f"{url}: {error.reason}") from None
        sleep(backoff * 2 ** attempt * (1 + 0.5 * random.random()))


def rest_signature_specs(server: str, model: str, signature: str, version: int | None = None,
                         timeout: float = 10.0) -> dict:
    """`{input name: (dtype, rank)}` of a signature, from `GET /v1/models/<model>/metadata`."""
    from tensorflow.core.framework import types_pb2

    path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
    with urllib.request.urlopen(f"http://{server}{path}/metadata", timeout=timeout) as response:
        signatures = json.loads(response.read())["metadata"]["signature_def"]["signatureDef"]
    if signature not in signatures:
        raise SystemExit(f"model {model} has no signature {signature}: {sorted(signatures)}")
    return {name: (tf.dtypes.as_dtype(types_pb2.DataType.Value(info["dtype"])),
                   len(info.get("tensorShape", {}).get("dim", [])))
            for name, info in signatures[signature]["inputs"].items()}


def grpc_signature_specs(client: ServingClient, model: str, signature: str,
                         version: int | None = None) -> dict:
    """`{input name: (dtype, rank)}` of a signature, from GetModelMetadata."""
    signatures = client.metadata(model, version)
    if signature not in signatures:
        raise SystemExit(f"model {model} has no signature {signature}: {sorted(signatures)}")
    return {name: (tf.dtypes.as_dtype(info.dtype), len(info.tensor_shape.dim))
            for name, info in signatures[signature].inputs.items()}


def parse_inputs(pairs, specs: dict, image_input: str, num_files: int) -> dict:
    """`NAME=VALUE` strings -> arrays typed by the signature, repeated per file if batched."""
    if image_input not in specs:
        raise SystemExit(f"--image-input {image_input}: the signature takes {sorted(specs)}")
    extra = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in specs:
            raise SystemExit(f"--input {name}: the signature takes {sorted(specs)}")
        dtype, rank = specs[name]
        scalar = np.array(value.encode() if dtype == tf.string else value,
                          dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
        extra[name] = np.repeat(scalar[np.newaxis], num_files, axis=0) if rank >= 1 else scalar
    return extra


def build_parser():
    parser = cli.make_parser("python -m vcaption.serving.client", __doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="HOST:PORT (gRPC, or REST with --rest)")
    cli.add_argument(parser, "--model-name", deprecated=["--model"], required=True,
                     help="the served model's name (TF Serving model_spec.name)")
    parser.add_argument("--signature", default="serving_default", help="signature to call")
    parser.add_argument("--version", type=int, default=None, help="model version (default: the latest)")
    cli.add_argument(parser, "--image-input", deprecated=["--image_input"], default="image_bytes",
                     help="the string input the files go to")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                        help="another input (repeated per file if it has a batch dimension); repeatable")
    cli.add_argument(parser, "--batch-size", deprecated=["--batch_size"], type=int, default=16,
                     help="files per request")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per request (s)")
    parser.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
    parser.add_argument("--rest", action="store_true", help="use the REST API")
    parser.add_argument("files", nargs="+", help="image files to send")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)

    client = None if args.rest else ServingClient(args.server, args.timeout, args.retries)
    specs = None
    if args.input:  # other inputs are typed (and batched or not) by the model's metadata
        specs = (rest_signature_specs(args.server, args.model_name, args.signature, args.version,
                                      args.timeout) if client is None else
                 grpc_signature_specs(client, args.model_name, args.signature, args.version))
    failed = 0
    for start in range(0, len(args.files), args.batch_size):
        names = args.files[start:start + args.batch_size]
        payloads = []
        for name in names:
            with open(name, "rb") as f:
                payloads.append(f.read())
        inputs = {args.image_input: np.array(payloads, dtype=object)}
        if specs is not None:
            inputs.update(parse_inputs(args.input, specs, args.image_input, len(names)))
        try:
            if client is not None:
                outputs = client.predict(args.model_name, inputs, args.signature, args.version)
            else:
                outputs = rest_predict(args.server, args.model_name, inputs, args.signature,
                                       args.version, args.timeout, args.retries)
        except (grpc.RpcError, RuntimeError) as error:
            detail = (f"{error.code().name}: {error.details()}" if isinstance(error, grpc.RpcError)
                      else str(error))
            for name in names:
                print(json.dumps({"file": name, "error": detail}), flush=True)
            failed += len(names)
            continue
        for row, name in enumerate(names):
            line = {"file": name}
            for key, value in outputs.items():
                line[key] = _readable(value[row])
            print(json.dumps(line), flush=True)
    if client is not None:
        client.close()
    return 1 if failed else 0


def _readable(value):
    if isinstance(value, (np.ndarray, list)):
        return [_readable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        value = value.item()
    return value


if __name__ == "__main__":
    sys.exit(main())
