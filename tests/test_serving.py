"""Serving: deployment configs, the development server's gRPC/REST API, the client, batching.

One tiny LRCN-2f export (served under the default preset name `lrcn_2f`) and a tiny generic
two-input model (`toy`, two versions) are served by an in-process development server on a free
loopback port, through a `models.config` whose base paths are the container's `/models/<name>`.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
import yaml
from google.protobuf import text_format

from captioning.test_export import DECODE, IMAGE_SIZE, WORDS, _jpeg, _png_header, _tiny_captioner
from vcaption import images, text
from vcaption.captioning import export
from vcaption.runtime import export_core
from vcaption.serving import client as client_lib
from vcaption.serving import protos
from vcaption.serving.batching import BatchOptions, BatchScheduler
from vcaption.serving.devserver import DevServer, fill_tensor_proto
from vcaption.serving.servables import ServingError

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVING = REPO / "serving"
MAX_REQUEST_BYTES = 1 << 20  # small, so that "oversized" costs little


class ToyModule(tf.Module):
    """A generic two-input signature (like VQA's image + question), nothing captioner-specific.

    `score` = mean pixel of the decoded image + length of the question + `offset`; the image goes
    through `images.preprocess_image`, so bytes that are not images fail in-graph as in exports.
    """

    def __init__(self, offset: float):
        super().__init__()
        self.offset = tf.Variable(offset)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes"),
                                  tf.TensorSpec([None], tf.string, name="question")])
    def answer(self, image_bytes, question):
        pixels = tf.map_fn(lambda b: images.preprocess_image(b, 8), image_bytes,
                           fn_output_signature=tf.TensorSpec([8, 8, 3], tf.uint8))
        mean = tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[1, 2, 3])  # [batch]
        score = mean + tf.cast(tf.strings.length(question), tf.float32) + self.offset
        return {"score": score, "answer": tf.strings.upper(question)}


def export_toy(root, offset: float) -> str:
    module = ToyModule(offset)
    return export_core.save_versioned(
        module, {"serving_default": module.answer.get_concrete_function()}, str(root), "toy")


def toy_inputs(jpegs, questions):
    return {"image_bytes": np.array(jpegs, object), "question": np.array(questions, object)}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The development server (batching on) over a models.config naming /models/<name> paths."""
    tmp = tmp_path_factory.mktemp("serving")
    root = tmp / "saved_models"
    toy_paths = [export_toy(root, offset) for offset in (1.0, 2.0)]  # toy versions 1 and 2
    config_path = tmp / "models.config"
    config_path.write_text("""
        model_config_list {
          config { name: "lrcn_2f" base_path: "/models/lrcn_2f" model_platform: "tensorflow" }
          config { name: "toy" base_path: "/models/toy" model_platform: "tensorflow"
                   model_version_policy { all {} }
                   version_labels { key: "stable" value: 1 } }
          config { name: "not_exported_yet" base_path: "/models/nothing" }
        }""")
    dev = DevServer(protos.read_model_server_config(str(config_path)),
                    BatchOptions(max_batch_size=8, batch_timeout_micros=3000, num_batch_threads=1),
                    models_dir=str(root), max_request_bytes=MAX_REQUEST_BYTES)
    dev.start(port=0, rest_port=0)
    client = client_lib.ServingClient(f"127.0.0.1:{dev.port}", timeout=60, retries=1)
    yield {"dev": dev, "client": client, "tmp": tmp, "root": root, "config_path": config_path,
           "toy": [tf.saved_model.load(p) for p in toy_paths],
           "jpegs": [_jpeg(seed) for seed in range(3)]}
    client.close()
    dev.stop()


@pytest.fixture(scope="module")
def captioner(deployment):
    """A tiny LRCN-2f exported as `lrcn_2f` into the served root (slow: traces beam search)."""
    vocab = text.Vocabulary.write(WORDS, str(deployment["tmp"] / "vocab.txt"))
    path = export.export_captioner(_tiny_captioner(), vocab, str(deployment["root"]), "lrcn_2f",
                                   IMAGE_SIZE, DECODE)
    deployment["dev"].refresh()
    return tf.saved_model.load(path)


def _code(call):
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


# ----------------------------------------------------------------------------------------------
# Deployment files.


def _fake_export(root, name: str, version: int, complete: bool = True) -> None:
    """A version directory as the config writer sees it (a `saved_model.pb` when complete)."""
    path = pathlib.Path(root, name, str(version))
    path.mkdir(parents=True)
    if complete:
        (path / "saved_model.pb").write_bytes(b"")


def test_committed_models_config_is_what_the_default_run_writes(tmp_path):
    """Must-show 1: the default run exports saved_models/lrcn_2f/<version> only, and the committed
    config is exactly what the export's config writer then leaves: lrcn_2f alone, so the stock
    model server (which waits for every configured model) starts."""
    from vcaption import presets
    from vcaption.serving import config as serving_config
    from vcaption.train import parse_args

    default = parse_args([]).preset
    cfg = presets.get_preset(default)
    _fake_export(tmp_path / cfg.export.saved_models_dir, cfg.export.name or cfg.name, 1)
    names = serving_config.write_models_config(str(tmp_path / cfg.export.saved_models_dir))
    assert names == ["lrcn_2f"] == [default]
    written = tmp_path / "serving" / "models.config"  # beside saved_models, as in the repository
    assert written.read_text() == (SERVING / "models.config").read_text()
    config = protos.read_model_server_config(str(SERVING / "models.config"))
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("lrcn_2f", "/models/lrcn_2f", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1


def test_config_writer_names_only_exported_models_and_keeps_their_settings(tmp_path):
    from vcaption.serving import config as serving_config

    root = tmp_path / "saved_models"
    _fake_export(root, "lrcn_2f", 1)
    _fake_export(root, "lrcn_2f", 2)
    _fake_export(root, "vqa_lstm_cnn", 3)
    _fake_export(root, "video_s2vt", 1, complete=False)  # no saved_model.pb: not loadable
    (root / "lrcn_2u" / ".tmp-0123").mkdir(parents=True)  # an export still being written
    (root / "lrcn_1u" / "latest").mkdir(parents=True)  # not an integer version
    (root / "README.md").write_text("not a model")
    output = tmp_path / "deploy" / "models.config"
    output.parent.mkdir()
    output.write_text("""
        model_config_list {
          config { name: "lrcn_2f" base_path: "/models/lrcn_2f" model_platform: "tensorflow"
                   model_version_policy { specific { versions: 1 versions: 2 } }
                   version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }
          config { name: "mao_mrnn" base_path: "/models/mao_mrnn" model_platform: "tensorflow" }
        }""")
    assert serving_config.main(["--models-dir", str(root), "--output", str(output)]) == 0
    config = protos.read_model_server_config(str(output))
    models = {m.name: m for m in config.model_config_list.config}
    assert list(models) == ["lrcn_2f", "vqa_lstm_cnn"]  # mao_mrnn's exports are gone: dropped
    kept = models["lrcn_2f"]  # a hand-made canary survives the rewrite
    assert list(kept.model_version_policy.specific.versions) == [1, 2]
    assert dict(kept.version_labels) == {"stable": 1, "canary": 2}
    new = models["vqa_lstm_cnn"]
    assert (new.base_path, new.model_platform) == ("/models/vqa_lstm_cnn", "tensorflow")
    assert new.model_version_policy.latest.num_versions == 1
    assert sorted(os.listdir(output.parent)) == ["models.config"]  # no temporary left behind
    # Nothing exported: an empty list, which the model server starts with.
    empty = tmp_path / "empty.config"
    assert serving_config.write_models_config(str(tmp_path / "nothing"), str(empty)) == []
    assert not protos.read_model_server_config(str(empty)).model_config_list.config
    # A config that does not parse is not overwritten: its hand-made settings would be lost.
    output.write_text("model_config_list { config { name: ")
    with pytest.raises(ValueError, match="not a valid ModelServerConfig"):
        serving_config.write_models_config(str(root), str(output))
    assert output.read_text() == "model_config_list { config { name: "
    assert serving_config.default_config_path("saved_models") == "serving/models.config"
    assert serving_config.default_config_path("gs://b/x/saved_models/") == "gs://b/x/serving/models.config"


def test_written_config_serves_every_export(tmp_path):
    """The written config names models that the development server then loads and serves, each
    with a version (the model server's condition for opening its ports)."""
    from vcaption.serving import config as serving_config

    root = tmp_path / "saved_models"
    export_toy(root, 1.0)
    assert serving_config.write_models_config(str(root)) == ["toy"]
    dev = DevServer(protos.read_model_server_config(str(tmp_path / "serving" / "models.config")),
                    models_dir=str(root))
    dev.refresh()
    assert list(dev.registry.versions("toy")) == [1]


def test_compose_pins_the_serving_image_and_binds_loopback():
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())["services"]["tfserving"]
    assert "../saved_models:/models:ro" in compose["volumes"]  # /models/<name> = saved_models/<name>
    # The model server's TensorFlow is the one the package pins (the exports' ops).
    major_minor = ".".join(tf.__version__.split(".")[:2])
    pin = re.search(r'"tensorflow>=([\d.]+),<', (REPO / "pyproject.toml").read_text()).group(1)
    assert pin == major_minor
    assert compose["image"] == f"tensorflow/serving:{major_minor}.0-gpu" and compose["runtime"] == "nvidia"
    assert compose["ports"] == ["127.0.0.1:8500:8500", "127.0.0.1:8501:8501"]
    readme = (SERVING / "README.md").read_text()
    assert "latest-gpu" not in readme and f"tensorflow/serving:{major_minor}.0-gpu" in readme
    assert "-p 8500:8500" not in readme and "-p 127.0.0.1:8500:8500" in readme


def _model_server_flags(command: str) -> list[str]:
    tokens = command.replace("\\\n", " ").split()
    after = tokens[tokens.index("tensorflow_model_server") + 1:]
    return [t[2:].split("=")[0] for t in after if t.startswith("--")]


def test_readme_and_compose_use_only_real_model_server_flags():
    readme = (SERVING / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    commands = [c for block in blocks for c in re.split(r"(?<!\\)\n", block)
                if "tensorflow_model_server" in c]
    assert commands, "the README shows the model server command line"
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())["services"]["tfserving"]
    commands.append(" ".join(compose["entrypoint"] + compose["command"]))
    for command in commands:
        flags = _model_server_flags(command)
        assert {"port", "rest_api_port", "model_config_file"} <= set(flags), command
        assert set(flags) <= protos.MODEL_SERVER_FLAGS, set(flags) - protos.MODEL_SERVER_FLAGS
        assert "--port=8500" in command and "--rest_api_port=8501" in command


def test_readme_vcaption_serving_commands_use_current_flags(capsys):
    """serving/README.md's client, load test, development server and config writer command lines
    parse, with no deprecated spelling (each would print a warning)."""
    import shlex

    from vcaption.serving import config as serving_config
    from vcaption.serving import devserver, loadtest

    modules = {"client": client_lib, "loadtest": loadtest, "devserver": devserver,
               "config": serving_config}
    readme = (SERVING / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    commands = [c.replace("\\\n", " ") for block in blocks for c in re.split(r"(?<!\\)\n", block)
                if "python -m vcaption.serving." in c]
    assert {c.split()[2] for c in commands} == {f"vcaption.serving.{name}" for name in modules}
    for command in commands:
        tokens = shlex.split(command, comments=True)
        args = modules[tokens[2].rsplit(".", 1)[1]].build_parser().parse_args(tokens[3:])
        assert capsys.readouterr().err == "", command
        if "model_name" in vars(args):
            assert args.model_name == "lrcn_2f"


def test_batching_and_monitoring_files_parse():
    for name in ("batching_parameters.txt", "batching_parameters_cpu.txt"):
        params = protos.read_batching_parameters(str(SERVING / name))
        options = BatchOptions.from_proto(params)  # validates allowed sizes against the maximum
        assert options.max_batch_size == params.max_batch_size.value >= 8, name
        assert options.batch_timeout_micros > 0 and options.num_batch_threads >= 1, name
    assert options.allowed_batch_sizes == ()  # CPU: no padding
    gpu = BatchOptions.from_proto(protos.read_batching_parameters(
        str(SERVING / "batching_parameters.txt")))
    assert gpu.allowed_batch_sizes[-1] == gpu.max_batch_size
    monitoring = protos.read_monitoring_config(str(SERVING / "monitoring.config"))
    assert monitoring.prometheus_config.enable
    with pytest.raises(ValueError, match="not a valid BatchingParameters"):  # wrong file
        protos.read_batching_parameters(str(SERVING / "monitoring.config"))
    params = text_format.Parse("max_batch_size { value: 8 } allowed_batch_sizes: 4",
                               protos.BatchingParameters())
    with pytest.raises(ValueError, match="end at max_batch_size"):
        BatchOptions.from_proto(params)


# ----------------------------------------------------------------------------------------------
# End to end over gRPC and REST.


def _strings(array):
    return [[c.decode() for c in row] for row in np.asarray(array).tolist()]


def _toy_direct(deployment, version, jpegs, questions):
    out = deployment["toy"][version - 1].signatures["serving_default"](
        image_bytes=tf.constant(jpegs), question=tf.constant(questions))
    return out["score"].numpy(), out["answer"].numpy().tolist()


def test_grpc_generic_model_versions_labels_metadata(deployment):
    client, jpegs = deployment["client"], deployment["jpegs"]
    assert client.status("toy") == {1: "AVAILABLE", 2: "AVAILABLE"}
    assert client.status("toy", version=1) == {1: "AVAILABLE"}
    signatures = client.metadata("toy")
    assert list(signatures) == ["serving_default"]
    assert set(signatures["serving_default"].inputs) == {"image_bytes", "question"}
    assert set(signatures["serving_default"].outputs) == {"score", "answer"}
    questions = [b"what colour", b"how many"]
    for version, label, expected_version in [(None, None, 2), (1, None, 1), (2, None, 2),
                                             (None, "stable", 1)]:
        out = client.predict("toy", toy_inputs(jpegs[:2], questions), version=version,
                             label=label)
        score, answer = _toy_direct(deployment, expected_version, jpegs[:2], questions)
        np.testing.assert_allclose(out["score"], score, rtol=1e-6)
        assert out["answer"].tolist() == answer == [q.upper() for q in questions]
    only = client.predict("toy", toy_inputs(jpegs[:1], [b"q"]), output_filter=["score"])
    assert set(only) == {"score"}


def _http(server, path, body=None):
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{server}{path}", data=data),
                                    timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_rest_row_and_columnar_forms(deployment):
    dev, jpegs = deployment["dev"], deployment["jpegs"]
    server = f"127.0.0.1:{dev.rest_port}"
    score, _ = _toy_direct(deployment, 1, jpegs[:2], [b"a", b"bb"])
    outputs = client_lib.rest_predict(server, "toy", toy_inputs(jpegs[:2], [b"a", b"bb"]),
                                      version=1)
    assert outputs["answer"] == ["A", "BB"]
    np.testing.assert_allclose(outputs["score"], score, rtol=1e-6)
    rows = [{"image_bytes": {"b64": base64.b64encode(j).decode()}, "question": q}
            for j, q in zip(jpegs[:2], ["a", "bb"])]
    status, body = _http(server, "/v1/models/toy/labels/stable:predict", {"instances": rows})
    assert status == 200 and [p["answer"] for p in body["predictions"]] == ["A", "BB"]
    np.testing.assert_allclose([p["score"] for p in body["predictions"]], score, rtol=1e-6)
    bad = [{"image_bytes": {"b64": base64.b64encode(b"not an image").decode()}, "question": "a"}]
    status, body = _http(server, "/v1/models/toy:predict", {"instances": bad})
    assert status == 400 and "not a JPEG" in body["error"]
    assert _http(server, "/v1/models/nope:predict", {"instances": rows})[0] == 404
    assert _http(server, "/v1/models/toy/versions/9:predict", {"instances": rows})[0] == 404
    assert _http(server, "/v1/models/toy:predict", {"inputs": {"question": ["x"]}})[0] == 400
    assert _http(server, "/v1/models/toy:predict", {"rows": []})[0] == 400
    status, body = _http(server, "/v1/models/toy")
    assert status == 200
    assert sorted(s["version"] for s in body["model_version_status"]) == ["1", "2"]
    status, body = _http(server, "/v1/models/toy/metadata")
    assert status == 200 and "serving_default" in body["metadata"]["signature_def"][
        "signatureDef"]


def malformed_requests(client, jpeg: bytes, feature_dim: int | None = None):
    """(kind, PredictRequest, allowed codes) for every kind of bad request in issue 8.

    With `feature_dim` (a captioner `lrcn_2f` is served) the captioner's signatures are
    included; otherwise `lrcn_2f` has no versions yet and must answer NOT_FOUND.
    """
    invalid = {grpc.StatusCode.INVALID_ARGUMENT}
    not_found = {grpc.StatusCode.NOT_FOUND}
    req = client.predict_request
    strings = lambda *b: np.array(list(b), object)  # noqa: E731
    toy = lambda images, questions, **kw: req("toy", {"image_bytes": images,  # noqa: E731
                                                      "question": questions}, **kw)
    huge_shape = tf.make_tensor_proto(np.array([b"q"], object))
    huge_shape.tensor_shape.dim[0].size = 10 ** 12  # a few bytes declaring 10^12 strings
    kinds = [
        ("not an image", toy(strings(b"definitely not an image"), strings(b"q")), invalid),
        ("empty bytes", toy(strings(jpeg, b""), strings(b"q", b"r")), invalid),
        ("bomb header", toy(strings(_png_header(30000, 30000)), strings(b"q")), invalid),
        ("truncated jpeg", toy(strings(jpeg[: len(jpeg) // 3]), strings(b"q")), invalid),
        ("wrong dtype", toy(np.zeros([1], np.float32), strings(b"q")), invalid),
        ("wrong dtype int", toy(strings(jpeg), np.array([7], np.int64)), invalid),
        ("wrong rank", toy(strings(jpeg).reshape(1, 1), strings(b"q")), invalid),
        ("scalar for batch", toy(np.array(jpeg, object), strings(b"q")), invalid),
        ("huge declared shape", toy(strings(jpeg), huge_shape), invalid),
        ("mismatched batch", toy(strings(jpeg), strings(b"a", b"b")), invalid),
        ("missing input", req("toy", {"image_bytes": strings(jpeg)}), invalid),
        ("no inputs", req("toy", {}), invalid),
        ("unknown input", req("toy", {"image_bytes": strings(jpeg), "question": strings(b"q"),
                                      "extra": [1.0]}), invalid),
        ("unknown output", toy(strings(jpeg), strings(b"q"), output_filter=["nope"]), invalid),
        ("oversized payload", toy(strings(b"\xff" * (MAX_REQUEST_BYTES + 10)), strings(b"q")),
         invalid),
        ("unknown model", req("nope", {"image_bytes": strings(jpeg)}), not_found),
        ("unknown version", toy(strings(jpeg), strings(b"q"), version=99), not_found),
        ("unknown label", toy(strings(jpeg), strings(b"q"), label="canary"), not_found),
        ("unknown signature", toy(strings(jpeg), strings(b"q"), signature="nope"), not_found),
        ("model without versions", req("not_exported_yet", {"image_bytes": strings(jpeg)}),
         not_found),
    ]
    if feature_dim is None:
        kinds.append(("captioner not exported", req("lrcn_2f", {"image_bytes": strings(jpeg)}),
                      not_found))
    else:
        kinds += [
            ("captioner: not an image", req("lrcn_2f", {"image_bytes": strings(b"GIF8junk")}),
             invalid),
            ("captioner: wrong width", req("lrcn_2f", {"features": np.zeros(
                [1, feature_dim + 1], np.float32)}, "caption_features"), invalid),
            ("captioner: missing input", req("lrcn_2f", {"image_bytes": strings(jpeg)},
                                             "caption_sample"), invalid),
            ("captioner: bad temperature", req("lrcn_2f", {
                "image_bytes": strings(jpeg), "temperature": np.float32([0]),
                "num_samples": np.int32([2])}, "caption_sample"), invalid),
            ("captioner: too many samples", req("lrcn_2f", {
                "image_bytes": strings(jpeg), "temperature": np.float32([1]),
                "num_samples": np.int32([export.MAX_SAMPLES + 1])}, "caption_sample"), invalid),
            ("captioner: scalar temperature", req("lrcn_2f", {
                "image_bytes": strings(jpeg), "temperature": np.float32(1),
                "num_samples": np.int32([2])}, "caption_sample"), invalid),
            ("captioner: settings for another batch", req("lrcn_2f", {
                "image_bytes": strings(jpeg), "temperature": np.float32([1, 1]),
                "num_samples": np.int32([2, 2])}, "caption_sample"), invalid),
            ("captioner: unknown signature", req("lrcn_2f", {"image_bytes": strings(jpeg)},
                                                 "nope"), not_found),
        ]
    return kinds


def test_malformed_requests_get_invalid_argument_or_not_found(deployment):
    client, jpegs = deployment["client"], deployment["jpegs"]
    kinds = malformed_requests(client, jpegs[0])
    for kind, request, allowed in kinds:
        code, details = _code(lambda: client.call(client.prediction.Predict, request))
        assert code in allowed, (kind, code, details)
        assert details, kind  # a message that says what is wrong
    # ... and the server keeps serving.
    out = client.predict("toy", toy_inputs(jpegs[:1], [b"q"]))
    assert out["answer"].tolist() == [b"Q"]
    assert _code(lambda: client.status("nope"))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: client.metadata("toy", version=7))[0] == grpc.StatusCode.NOT_FOUND


def test_batched_requests_each_get_their_own_answer(deployment):
    """Concurrent requests (one of them bad) through the batcher: right rows, one failure."""
    client, jpegs, dev = deployment["client"], deployment["jpegs"], deployment["dev"]
    inputs = [([j], [b"q%d" % i]) for i, j in enumerate(jpegs)]
    inputs += [(jpegs[1:], [b"x", b"yy"]), ([b"not an image"], [b"z"])]
    results = [None] * len(inputs)
    before = sum(len(s.batch_sizes) for s in dev._schedulers.values())
    barrier = threading.Barrier(len(inputs))

    def send(i):
        barrier.wait()
        try:
            results[i] = client.predict("toy", toy_inputs(*inputs[i]), version=1)
        except grpc.RpcError as error:
            results[i] = error.code()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, (images_, questions) in enumerate(inputs[:-1]):
        score, answer = _toy_direct(deployment, 1, images_, questions)
        np.testing.assert_allclose(results[i]["score"], score, rtol=1e-6)
        assert results[i]["answer"].tolist() == answer
    assert results[-1] == grpc.StatusCode.INVALID_ARGUMENT
    assert sum(len(s.batch_sizes) for s in dev._schedulers.values()) > before


def test_new_versions_are_loaded_and_removed_ones_unloaded(deployment):
    """What the poller does (`refresh`): a new export is served, a deleted one goes away."""
    import shutil

    dev, client, jpegs = deployment["dev"], deployment["client"], deployment["jpegs"]
    toy_root = deployment["root"] / "toy"
    path = toy_root / "3"
    shutil.copytree(toy_root / "1", toy_root / ".tmp-copy")  # as save_versioned: rename into place
    os.rename(toy_root / ".tmp-copy", path)
    dev.refresh()
    assert client.status("toy") == {1: "AVAILABLE", 2: "AVAILABLE", 3: "AVAILABLE"}
    latest = client.predict("toy", toy_inputs(jpegs[:1], [b"ab"]))["score"]  # a copy of v1
    np.testing.assert_allclose(latest, _toy_direct(deployment, 1, jpegs[:1], [b"ab"])[0],
                               rtol=1e-6)
    shutil.rmtree(path)
    dev.refresh()
    assert client.status("toy") == {1: "AVAILABLE", 2: "AVAILABLE"}


# ----------------------------------------------------------------------------------------------
# Client.


def _write_files(tmp_path, payloads):
    files = []
    for i, payload in enumerate(payloads):
        files.append(str(tmp_path / f"{i}.jpg"))
        pathlib.Path(files[-1]).write_bytes(payload)
    return files


def test_client_cli_batches_files(deployment, tmp_path, capsys):
    dev, jpegs = deployment["dev"], deployment["jpegs"]
    files = _write_files(tmp_path, [*jpegs, b"not an image"])
    ok_before = dev.codes.get("OK", 0)
    # --input question=... is typed from the metadata and repeated once per file.
    assert client_lib.main(["--server", f"127.0.0.1:{dev.port}", "--model-name", "toy", "--version",
                            "1", "--input", "question=why", "--batch-size", "2",
                            *files[:3]]) == 0
    assert dev.codes["OK"] - ok_before == 3  # metadata + 3 files in 2 requests
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    score, _ = _toy_direct(deployment, 1, jpegs, [b"why"] * 3)
    assert [line["file"] for line in lines] == files[:3]
    assert [line["answer"] for line in lines] == ["WHY"] * 3
    np.testing.assert_allclose([line["score"] for line in lines], score, rtol=1e-6)

    # The REST path; a failing request is reported per file and in the exit status.
    assert client_lib.main(["--rest", "--server", f"127.0.0.1:{dev.rest_port}", "--model-name", "toy",
                            "--version", "1", "--input", "question=why", "--batch-size", "1", files[0],
                            files[3]]) == 1
    rest_lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rest_lines[0]["answer"] == "WHY"
    assert rest_lines[0]["score"] == pytest.approx(float(score[0]), rel=1e-6)
    assert "HTTP 400" in rest_lines[1]["error"] and "not a JPEG" in rest_lines[1]["error"]


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE


def test_client_retries_unavailable_with_exponential_backoff():
    sleeps, calls = [], []

    def flaky(request, timeout):
        calls.append(timeout)
        if len(calls) < 3:
            raise _Unavailable()
        return "ok"

    client = client_lib.ServingClient("127.0.0.1:1", timeout=2.5, retries=3, backoff=0.1,
                                      sleep=sleeps.append)
    assert client.call(flaky, None) == "ok"
    assert calls == [2.5, 2.5, 2.5]  # every attempt has the deadline
    assert len(sleeps) == 2 and 0.1 <= sleeps[0] <= 0.15 and 0.2 <= sleeps[1] <= 0.3
    sleeps.clear()
    with pytest.raises(grpc.RpcError):  # a server that never comes up: retries run out
        client_lib.ServingClient("127.0.0.1:1", timeout=0.5, retries=2, backoff=0.01,
                                 sleep=sleeps.append).status("x")
    assert len(sleeps) == 2


# ----------------------------------------------------------------------------------------------
# Batch scheduler.


@pytest.mark.parametrize("array", [
    np.array([[0.5, -1.25, 3e38]], np.float32), np.arange(-3, 9, dtype=np.int32).reshape(2, 3, 2),
    np.array([2 ** 40, -1], np.int64), np.array([True, False]), np.zeros([0, 3], np.float32),
    np.array([[b"a caption", b""], [b"\xff\x00 bytes", b"x"]], dtype=object)])
def test_response_tensors_read_back_as_make_tensor_proto_writes_them(array):
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    reference = tf.make_tensor_proto(array)
    assert proto.dtype == reference.dtype and proto.tensor_shape == reference.tensor_shape
    back = tf.make_ndarray(proto)
    assert back.dtype == tf.make_ndarray(reference).dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_batching_ratios_take_the_best_unbatched_baseline():
    from vcaption.bench.serving import batching_ratios
    from vcaption.serving.loadtest import LevelResult

    def level(label, concurrency, qps, p99):
        return LevelResult(label, concurrency, 100, 0, 1.0, qps, p99 / 2, p99, p99, {})

    lines = batching_ratios([level("unbatched", 1, 100.0, 5.0), level("unbatched", 16, 300.0, 50.0),
                             level("unbatched, 1x1 threads", 1, 200.0, 8.0),
                             level("batched", 16, 900.0, 20.0)])
    # Throughput against the fastest single client (200 QPS), p99 against the tightest (5 ms).
    assert lines == ["throughput batched c=16 / unbatched, 1x1 threads c=1: 4.50x (target >= 5x)",
                     "p99 batched c=16 / unbatched c=1: 4.00x (target <= 3x)"]


def test_batch_scheduler_concatenates_splits_and_isolates_failures():
    seen = []

    def run(inputs):
        x = inputs["x"]
        seen.append(len(x))
        if np.any(x < 0):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "negative")
        return {"y": x * 10, "n": np.full([len(x)], len(x))}

    options = BatchOptions(max_batch_size=8, batch_timeout_micros=200_000,
                           allowed_batch_sizes=(4, 8))
    scheduler = BatchScheduler(run, options)
    try:
        futures = [scheduler.submit({"x": np.array([i, i + 100])}) for i in range(3)]
        bad = scheduler.submit({"x": np.array([-1])})
        for i, future in enumerate(futures):
            assert future.result(5)["y"].tolist() == [10 * i, 10 * (i + 100)]
        with pytest.raises(ServingError, match="negative"):
            bad.result(5)
        assert seen[0] == 8  # 7 rows in one batch, padded to the allowed size 8
        assert scheduler.batch_sizes[0] == 7
        # Timeout: a lone request runs after batch_timeout_micros even though the batch is small.
        start = time.monotonic()
        assert scheduler.submit({"x": np.array([5])}).result(5)["y"].tolist() == [50]
        assert time.monotonic() - start >= 0.15
        with pytest.raises(ServingError, match="equal 0th-dimension size"):
            scheduler.submit({"x": np.array([1]), "z": np.array([1, 2])})
    finally:
        scheduler.close()

    blocked = threading.Event()
    slow = BatchScheduler(lambda inputs: blocked.wait(5) and {"y": inputs["x"]},
                          BatchOptions(max_batch_size=2, max_enqueued_batches=1))
    try:
        first = slow.submit({"x": np.array([1, 2])})
        time.sleep(0.1)  # the worker takes it and blocks
        queued = slow.submit({"x": np.array([3, 4])})
        with pytest.raises(ServingError) as info:
            slow.submit({"x": np.array([5])})
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        blocked.set()
        assert first.result(5)["y"].tolist() == [1, 2] and queued.result(5)["y"].tolist() == [3, 4]
    finally:
        blocked.set()
        slow.close()


# ----------------------------------------------------------------------------------------------
# Fidelity to the model server: what TF Serving refuses is refused, before anything is decoded.


def test_batching_refuses_what_tf_serving_batching_refuses_and_splits_when_enabled():
    options = BatchOptions(max_batch_size=8)
    with pytest.raises(ServingError, match="at least one dimension"):  # a scalar input
        options.task_size({"image_bytes": [1], "temperature": []})
    with pytest.raises(ServingError, match="equal 0th-dimension size"):
        options.task_size({"image_bytes": [2], "question": [3]})
    with pytest.raises(ServingError) as info:
        options.task_size({"image_bytes": [9], "question": [9]})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == "Task size 9 is larger than maximum input batch size 8"
    assert options.task_size({"x": [8, 3]}) == 8

    # enable_large_batch_splitting: still at most max_batch_size rows a request, but batches of
    # max_execution_batch_size rows; a larger request runs in pieces and gets its rows back.
    split = BatchOptions.from_proto(text_format.Parse(
        "max_batch_size { value: 5 } enable_large_batch_splitting { value: true } "
        "max_execution_batch_size { value: 2 } batch_timeout_micros { value: 0 }",
        protos.BatchingParameters()))
    assert (split.max_batch_size, split.execution_batch_size) == (5, 2)
    with pytest.raises(ServingError, match="Task size 6 is larger than maximum input batch "
                                           "size 5"):
        split.task_size({"x": [6]})
    with pytest.raises(ValueError, match="end at max_batch_size"):
        BatchOptions(max_batch_size=5, enable_large_batch_splitting=True,
                     max_execution_batch_size=2, allowed_batch_sizes=(1, 5))
    scheduler = BatchScheduler(lambda inputs: {"y": inputs["x"] * 10}, split)
    try:
        assert scheduler.submit({"x": np.arange(5)}).result(10)["y"].tolist() == [0, 10, 20, 30,
                                                                                  40]
        assert max(scheduler.batch_sizes) == 2 and sum(scheduler.batch_sizes) == 5
    finally:
        scheduler.close()

    # Outputs that do not line up with the rows cannot be split back, even alone in a batch.
    misaligned = BatchScheduler(lambda inputs: {"y": np.float32(1)}, options)
    try:
        with pytest.raises(ServingError) as info:
            misaligned.submit({"x": np.arange(2)}).result(10)
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        misaligned.close()


def _toy_signature(deployment, **limits):
    from vcaption.serving.servables import Signature

    return Signature("serving_default", deployment["toy"][0].signatures["serving_default"],
                     **limits)


def _strings_proto(values, shape):
    proto = tf.make_tensor_proto(np.array(values, object))
    del proto.tensor_shape.dim[:]
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def test_declared_shapes_are_checked_against_the_payload_before_anything_is_read(deployment,
                                                                                 monkeypatch):
    jpeg = deployment["jpegs"][0]
    signature = _toy_signature(deployment)
    read = []
    monkeypatch.setattr(tf, "make_ndarray", lambda proto: read.append(proto) or 1 / 0)

    def refused(image_bytes, question, match, sig=signature):
        with pytest.raises(ServingError, match=match) as info:
            sig.check({"image_bytes": image_bytes, "question": question})
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT

    one = _strings_proto([b"q"], [1])
    # A 1 KB request declaring 8,000 copies of one JPEG (TF Serving would decode 8,000 images).
    refused(_strings_proto([jpeg], [8000]), _strings_proto([b"q"], [8000]),
            "8000 string elements|16000 string elements")
    refused(_strings_proto([jpeg], [10 ** 12]), one, "more than")
    refused(_strings_proto([jpeg, jpeg], [3]), _strings_proto([b"q"], [3]),
            "declares 3 elements but holds 2 values")
    refused(_strings_proto([jpeg] * 3, [2]), _strings_proto([b"q"], [2]), "holds 3 values")
    refused(_strings_proto([], [1]), one, "holds 0 values")
    refused(_strings_proto([], [0]), _strings_proto([], [0]), "empty batch")
    refused(_strings_proto([jpeg], [1]), _strings_proto([], [0]), "empty batch")
    wrong_field = _strings_proto([b"q"], [1])
    wrong_field.int_val.append(3)
    refused(_strings_proto([jpeg], [1]), wrong_field, "int_val")
    # Strings count their bytes (plus a tf.string element each), not one byte each.
    small = _toy_signature(deployment, max_tensor_bytes=10_000)
    refused(_strings_proto([b"x" * 3000] * 4, [4]), _strings_proto([b"q"] * 4, [4]),
            "fills 12096 bytes", small)
    refused(_strings_proto([b"x" * 3000], [4]), _strings_proto([b"q"], [4]), "fills 12096 bytes",
            small)
    assert read == []  # nothing was read, let alone decoded

    monkeypatch.undo()
    # One value filling the shape is what TF Serving does with it (Tensor::FromProto).
    images_, questions = _strings_proto([jpeg], [3]), _strings_proto([b"why"], [3])
    assert signature.check({"image_bytes": images_, "question": questions}) == {
        "image_bytes": [3], "question": [3]}
    outputs = signature.run(signature.read({"image_bytes": images_, "question": questions}))
    score, answer = _toy_direct(deployment, 1, [jpeg] * 3, [b"why"] * 3)
    np.testing.assert_allclose(outputs["score"], score, rtol=1e-6)
    bad_content = tf.make_tensor_proto(np.zeros([2, 3], np.float32))
    bad_content.tensor_content = bad_content.tensor_content[:-4]
    from vcaption.serving.servables import _value_count
    with pytest.raises(ServingError, match="tensor_content holds 20 bytes"):
        _value_count("features", bad_content, tf.float32, 6)


def test_unbatched_server_refuses_amplified_requests_too(deployment):
    """Without batching no batch size bounds a request: the string element cap does."""
    dev = DevServer(protos.read_model_server_config(str(deployment["config_path"])),
                    models_dir=str(deployment["root"]), max_string_elements=64)
    dev.start(port=0)
    client = client_lib.ServingClient(f"127.0.0.1:{dev.port}", timeout=60, retries=0)
    try:
        jpeg = deployment["jpegs"][0]
        request = client.predict_request("toy", {"image_bytes": _strings_proto([jpeg], [8000]),
                                                 "question": _strings_proto([b"q"], [8000])})
        code, details = _code(lambda: client.prediction.Predict(request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "16000 string elements" in details
        for rows in (0, 1):  # an empty batch alone, unbatched, is refused as when batched
            images_ = _strings_proto([jpeg] * rows, [rows])
            questions = _strings_proto([b"q"] * rows, [rows])
            request = client.predict_request("toy", {"image_bytes": images_,
                                                     "question": questions})
            if rows:
                assert client.prediction.Predict(request).outputs["answer"].string_val == [b"Q"]
            else:
                code, details = _code(lambda: client.prediction.Predict(request))
                assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty batch" in details
    finally:
        client.close()
        dev.stop()


def test_predict_without_deadline_is_served_with_batching(deployment):
    client, jpegs = deployment["client"], deployment["jpegs"]
    request = client.predict_request("toy", toy_inputs(jpegs[:2], [b"a", b"b"]), version=1)
    response = client.prediction.Predict(request)  # no timeout: the RPC has no deadline
    assert list(response.outputs["answer"].string_val) == [b"A", b"B"]
    over = client.predict_request("toy", toy_inputs(jpegs[:1] * 9, [b"a"] * 9))
    code, details = _code(lambda: client.prediction.Predict(over))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "Task size 9 is larger than maximum input batch size 8"


def _raw_http(port: int, data: bytes, close_write: bool = True) -> tuple[int, dict]:
    """Sends `data` as it is; returns the status and JSON body of the server's answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        response = b""
        while b"\r\n\r\n" not in response or len(response.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"Content-Length: (\d+)", response)[1]):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    head, body = response.split(b"\r\n\r\n", 1)
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _rest_post(port: int, path: str, body: bytes, headers: dict | None = None) -> bytes:
    headers = {"Content-Length": str(len(body)), **(headers or {})}
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


def rest_client_errors(jpeg: bytes):
    """(kind, path, raw body or None for GET) of REST requests the model server answers 4xx."""
    b64 = base64.b64encode(jpeg).decode()
    row = {"image_bytes": {"b64": b64}, "question": "q"}
    dumps = lambda value: json.dumps(value).encode()  # noqa: E731
    return [
        ("b64 not a string", "/v1/models/toy:predict",
         dumps({"instances": [{"image_bytes": {"b64": 123}, "question": "q"}]})),
        ("b64 with other keys", "/v1/models/toy:predict",
         dumps({"instances": [{"image_bytes": {"b64": b64, "x": 1}, "question": "q"}]})),
        ("deep nesting", "/v1/models/toy:predict",
         b'{"inputs": {"question": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
        ("nesting deeper than the rank", "/v1/models/toy:predict",
         dumps({"inputs": {"image_bytes": [[{"b64": b64}]], "question": [["q"]]}})),
        ("non-string signature_name", "/v1/models/toy:predict",
         dumps({"signature_name": 7, "instances": [row]})),
        ("version 10^23", "/v1/models/toy/versions/" + "1" + "0" * 23 + ":predict",
         dumps({"instances": [row]})),
        ("GET version 10^23", "/v1/models/toy/versions/1" + "0" * 23, None),
        ("GET metadata version 10^23", "/v1/models/toy/versions/1" + "0" * 23 + "/metadata",
         None),
        ("not JSON", "/v1/models/toy:predict", b"{instances: ["),
        ("not UTF-8", "/v1/models/toy:predict", b"\xff\xfe{}"),
        ("empty instances", "/v1/models/toy:predict", dumps({"instances": []})),
        ("empty batch", "/v1/models/toy:predict",
         dumps({"inputs": {"image_bytes": [], "question": []}})),
        ("over-size batch", "/v1/models/toy:predict", dumps({"instances": [row] * 9})),
        ("number for a string", "/v1/models/toy:predict",
         dumps({"inputs": {"image_bytes": [{"b64": b64}], "question": [10 ** 30]}})),
        ("null row value", "/v1/models/toy:predict",
         dumps({"instances": [{"image_bytes": {"b64": b64}, "question": None}]})),
        ("not an image", "/v1/models/toy:predict", dumps({"instances": [
            {"image_bytes": {"b64": base64.b64encode(b"nope").decode()}, "question": "q"}]})),
    ]


def test_rest_client_errors_get_4xx_and_the_connection_stays_usable(deployment):
    import http.client

    dev, jpeg = deployment["dev"], deployment["jpegs"][0]
    connection = http.client.HTTPConnection("127.0.0.1", dev.rest_port, timeout=60)
    valid = json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(jpeg).decode()},
                                       "question": "ok"}]})
    try:
        for kind, path, body in rest_client_errors(jpeg):
            connection.request("GET" if body is None else "POST", path, body)
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert response.status == 400, (kind, response.status, answer)
            assert answer["error"], kind
            # The same connection carries the next request: nothing was left half-read.
            connection.request("POST", "/v1/models/toy:predict", valid)
            response = connection.getresponse()
            assert response.status == 200, (kind, response.read())
            assert json.loads(response.read())["predictions"][0]["answer"] == "OK"
    finally:
        connection.close()


def test_rest_truncated_stalled_and_chunked_bodies_are_refused_not_run(deployment):
    dev, jpeg = deployment["dev"], deployment["jpegs"][0]
    body = json.dumps({"instances": [{"image_bytes": {"b64": base64.b64encode(jpeg).decode()},
                                      "question": "q"}]}).encode()
    ok_before = dev.codes.get("OK", 0)
    # Content-Length promises more than arrives before the client closes its side.
    status, answer = _raw_http(dev.rest_port, _rest_post(dev.rest_port, "/v1/models/toy:predict",
                                                         body[:-2], {"Content-Length": len(body)}))
    assert status == 400 and "truncated body" in answer["error"]
    # ... or the client stalls: the read times out (the model server's rest_api_timeout_in_ms).
    saved, dev.rest_timeout = dev.rest_timeout, 0.5
    try:
        status, answer = _raw_http(dev.rest_port, _rest_post(
            dev.rest_port, "/v1/models/toy:predict", body[:10], {"Content-Length": len(body)}),
            close_write=False)
    finally:
        dev.rest_timeout = saved
    assert status == 408 and "did not arrive" in answer["error"]
    status, answer = _raw_http(dev.rest_port, _rest_post(
        dev.rest_port, "/v1/models/toy:predict", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        {"Transfer-Encoding": "chunked"}))
    assert status == 400 and "Content-Length" in answer["error"]
    assert dev.codes.get("OK", 0) == ok_before  # none of them ran


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read())[1]) * 1024


def fuzz_devserver(deployment, count: int, seed: int = 0, threads: int = 8) -> dict:
    """Sends `count` requests (bounded, loopback) to the batching development server from
    `threads` threads: valid ones interleaved with every kind of bad one, gRPC without deadlines.

    Returns {"codes": {kind: {code: n}}, "wrong": [...], "rss_growth": bytes, "seconds": s}.
    """
    import concurrent.futures
    import http.client

    dev, client, jpegs = deployment["dev"], deployment["client"], deployment["jpegs"]
    req = client.predict_request
    invalid = {"INVALID_ARGUMENT"}
    grpc_kinds = [(kind, request, {code.name for code in allowed})
                  for kind, request, allowed in malformed_requests(client, jpegs[0])]
    grpc_kinds += [
        ("amplified [8000]", req("toy", {"image_bytes": _strings_proto([jpegs[0]], [8000]),
                                         "question": _strings_proto([b"q"], [8000])}), invalid),
        ("amplified [5], 2 values", req("toy", {
            "image_bytes": _strings_proto(jpegs[:2], [5]),
            "question": _strings_proto([b"q"], [5])}), invalid),
        ("empty batch", req("toy", {"image_bytes": _strings_proto([], [0]),
                                    "question": _strings_proto([], [0])}), invalid),
        ("over-size batch", req("toy", toy_inputs(jpegs[:1] * 9, [b"q"] * 9)), invalid),
    ]
    valid_grpc = [("valid", req("toy", toy_inputs(jpegs[:1], [b"a"])), {"OK"}),
                  ("valid 3 rows", req("toy", toy_inputs(jpegs, [b"a", b"b", b"c"])), {"OK"}),
                  ("valid broadcast", req("toy", {"image_bytes": _strings_proto([jpegs[1]], [4]),
                                                  "question": _strings_proto([b"q"], [4])}),
                   {"OK"})]
    rest_kinds = [(kind, path, body, {400}) for kind, path, body in rest_client_errors(jpegs[0])]
    valid_rest = ("valid REST", "/v1/models/toy:predict", json.dumps({"instances": [
        {"image_bytes": {"b64": base64.b64encode(jpegs[2]).decode()}, "question": "r"}]}).encode(),
                  {200})
    truncated = ("truncated body", valid_rest[2])
    rng = np.random.default_rng(seed)
    schedule = []
    for i in range(count):
        if i % 4 == 0:  # every fourth request is a valid one, gRPC or REST
            schedule.append(valid_rest if i % 8 == 0 else valid_grpc[rng.integers(3)])
        elif i % 4 == 1:
            schedule.append(rest_kinds[rng.integers(len(rest_kinds))])
        elif i % 50 == 3:
            schedule.append(truncated)
        else:
            schedule.append(grpc_kinds[rng.integers(len(grpc_kinds))])

    def send(item):
        kind = item[0]
        if item is truncated:
            status, _ = _raw_http(dev.rest_port, _rest_post(
                dev.rest_port, "/v1/models/toy:predict", item[1][:-5],
                {"Content-Length": len(item[1])}))
            return kind, status, status == 400
        if len(item) == 4:  # REST
            _, path, body, allowed = item
            connection = http.client.HTTPConnection("127.0.0.1", dev.rest_port, timeout=120)
            try:
                connection.request("GET" if body is None else "POST", path, body)
                status = connection.getresponse().status
            finally:
                connection.close()
            return kind, status, status in allowed
        _, request, allowed = item
        try:
            client.prediction.Predict(request)  # no deadline, as most scripts
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        return kind, code, code in allowed

    for item in valid_grpc + [valid_rest]:  # warm every path before measuring memory
        assert send(item)[2], item[0]
    rss_before, start = _rss_bytes(), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(send, schedule))
    seconds = time.monotonic() - start
    codes: dict = {}
    for kind, code, _ in answers:
        codes.setdefault(kind, {}).setdefault(code, 0)
        codes[kind][code] += 1
    return {"codes": codes, "wrong": [(k, c) for k, c, ok in answers if not ok],
            "rss_growth": _rss_bytes() - rss_before, "seconds": seconds, "requests": len(answers)}


def _check_fuzz(deployment, report: dict) -> None:
    totals: dict = {}
    for by_code in report["codes"].values():
        for code, n in by_code.items():
            totals[str(code)] = totals.get(str(code), 0) + n
    print(f"\nfuzz: {report['requests']} requests in {report['seconds']:.1f} s, answers {totals}, "
          f"RSS growth {report['rss_growth'] / 2 ** 20:.1f} MiB")
    assert not report["wrong"], report["wrong"][:10]
    assert not {"INTERNAL", "UNKNOWN", "500"} & set(totals)
    assert report["rss_growth"] < 200 * 2 ** 20  # bounded, whatever the requests declare
    # ... and the server is still up and right.
    out = deployment["client"].predict("toy", toy_inputs(deployment["jpegs"][:1], [b"q"]))
    assert out["answer"].tolist() == [b"Q"]


def test_fuzz_batching_devserver_answers_bad_requests_as_client_errors(deployment):
    """Must-show 2 (bounded: 1000 requests on loopback): zero INTERNAL / UNKNOWN / HTTP 500,
    every valid request interleaved succeeds, memory bounded."""
    _check_fuzz(deployment, fuzz_devserver(deployment, 1000))


@pytest.mark.slow
def test_fuzz_batching_devserver_10000_requests(deployment):
    _check_fuzz(deployment, fuzz_devserver(deployment, 10_000, seed=1, threads=16))


# ----------------------------------------------------------------------------------------------
# Load test.


def test_loadtest_reports_and_plots(deployment, tmp_path):
    from vcaption.serving import loadtest

    results = loadtest.run([1, 2], duration=1.0, server=f"127.0.0.1:{deployment['dev'].port}",
                           model="toy", inputs=toy_inputs(deployment["jpegs"][:1], [b"q"]),
                           warmup=2)
    assert [r.concurrency for r in results] == [1, 2]
    for r in results:
        assert r.requests > 0 and r.errors == 0 and r.qps > 0
        assert 0 < r.p50 <= r.p95 <= r.p99
    table = loadtest.format_table(results)
    assert "QPS" in table and "p99" in table
    png = loadtest.plot(results, str(tmp_path / "load.png"))
    assert pathlib.Path(png).read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------------------------
# Slow: the captioner export end to end, and a storm of malformed requests.


@pytest.mark.slow
def test_captioner_every_signature_over_grpc_rest_and_cli(deployment, captioner, tmp_path,
                                                          capsys):
    client, jpegs, dev = deployment["client"], deployment["jpegs"], deployment["dev"]
    signatures = client.metadata("lrcn_2f")
    assert set(signatures) == set(export.SIGNATURES)
    feature_dim = signatures["caption_features"].inputs["features"].tensor_shape.dim[1].size
    features = np.random.default_rng(0).normal(size=(2, feature_dim)).astype(np.float32)
    requests = {
        "serving_default": {"image_bytes": np.array(jpegs, object)},
        "caption_features": {"features": features},
        "caption_sample": {"image_bytes": np.array(jpegs[:2], object),
                           "temperature": np.float32([1.0, 0.5]), "num_samples": np.int32([4, 2])},
    }
    for signature, inputs in requests.items():
        served = client.predict("lrcn_2f", inputs, signature)
        direct = captioner.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        assert _strings(served["captions"]) == _strings(direct["captions"]), signature
        np.testing.assert_allclose(served["scores"], direct["scores"].numpy(), rtol=1e-5)
        assert served["captions"].shape == (len(next(iter(inputs.values()))), DECODE.n_best)
    direct = _strings(captioner.signatures["serving_default"](image_bytes=tf.constant(jpegs))[
        "captions"])
    outputs = client_lib.rest_predict(f"127.0.0.1:{dev.rest_port}", "lrcn_2f",
                                      {"image_bytes": jpegs})
    assert outputs["captions"] == direct

    files = _write_files(tmp_path, jpegs)
    assert client_lib.main(["--server", f"127.0.0.1:{dev.port}", "--model-name", "lrcn_2f",
                            "--batch-size", "2", *files]) == 0
    assert [json.loads(line)["captions"] for line in capsys.readouterr().out.splitlines()] == \
        direct
    assert client_lib.main(["--server", f"127.0.0.1:{dev.port}", "--model-name", "lrcn_2f",
                            "--signature", "caption_sample", "--input", "temperature=0.7",
                            "--input", "num_samples=5", files[0]]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert len(sampled["captions"]) == DECODE.n_best and len(sampled["scores"]) == DECODE.n_best

    # The load test's command line: images from a directory, two per request.
    from vcaption.serving import loadtest

    assert loadtest.main(["--server", f"127.0.0.1:{dev.port}", "--model-name", "lrcn_2f",
                          "--images", str(tmp_path), "--batch-size", "2", "--concurrency", "1",
                          "--duration", "0.5", "--output", str(tmp_path / "load")]) == 0
    (level,) = json.loads((tmp_path / "load" / "loadtest.json").read_text())
    assert level["requests"] > 0 and level["errors"] == 0


@pytest.mark.slow
def test_10000_malformed_requests_under_load_keep_the_server_up(deployment, captioner):
    """Must-show 4: every malformed kind, interleaved with valid requests, from 8 threads, against
    a development server subprocess with batching on."""
    import concurrent.futures

    from vcaption.bench.serving import ONE_THREAD_EACH, start_devserver

    # With the CPU deployment's 1x1 TensorFlow thread pools (they must be set before any op runs).
    process, port = start_devserver(str(deployment["config_path"]), [
        "--models_dir", str(deployment["root"]), "--max_request_bytes", str(MAX_REQUEST_BYTES),
        "--enable_batching", "--batching_parameters_file",
        str(SERVING / "batching_parameters.txt"), *ONE_THREAD_EACH])
    client = client_lib.ServingClient(f"127.0.0.1:{port}", timeout=120, retries=0)
    try:
        jpegs = deployment["jpegs"]
        feature_dim = client.metadata("lrcn_2f")["caption_features"].inputs[
            "features"].tensor_shape.dim[1].size
        kinds = malformed_requests(client, jpegs[0], feature_dim)
        valid = [client.predict_request("toy", toy_inputs(jpegs[:2], [b"a", b"b"])),
                 client.predict_request("lrcn_2f", {"image_bytes": np.array(jpegs[:1], object)})]
        schedule = []  # (kind, request, allowed codes or None for "must succeed")
        malformed = 0
        while malformed < 10_000:
            if len(schedule) % 20 == 19:
                schedule.append(("valid", valid[len(schedule) % 2], None))
            else:
                schedule.append(kinds[malformed % len(kinds)])
                malformed += 1

        def send(item):
            kind, request, allowed = item
            try:
                client.prediction.Predict(request, timeout=120)
                return kind, allowed, grpc.StatusCode.OK
            except grpc.RpcError as error:
                return kind, allowed, error.code()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, schedule))
        wrong = [(kind, code) for kind, allowed, code in answers
                 if (code != grpc.StatusCode.OK if allowed is None else code not in allowed)]
        assert not wrong, wrong[:10]
        assert sum(allowed is not None for _, allowed, _ in answers) == 10_000
        assert sum(allowed is None for _, allowed, _ in answers) >= 500
        assert process.poll() is None  # still up
        assert client.status("lrcn_2f") == {1: "AVAILABLE"}
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
