"""TF Serving's configuration protos in text format, and the model server's real flags.

`ModelServerConfig` comes with the `tensorflow-serving-api` wheel. `BatchingParameters`
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto) and `MonitoringConfig`
(tensorflow_serving/config/monitoring_config.proto) do not, so their messages are declared here
with the same package, field names, numbers and types, which makes the text files in `serving/`
parse exactly as `tensorflow_model_server` parses them.

Example:
```python
config = protos.read_model_server_config("serving/models.config")
params = protos.read_batching_parameters("serving/batching_parameters.txt")
params.max_batch_size.value  # 32
```
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2

# Flags of `tensorflow_model_server`, from the flag list in
# github.com/tensorflow/serving tensorflow_serving/model_servers/main.cc (2.x). The README's
# command lines and the compose file may only use these (tests/test_serving.py checks).
MODEL_SERVER_FLAGS = frozenset({
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support", "enable_batching", "allow_version_labels_for_unavailable_models",
    "batching_parameters_file", "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path", "num_load_threads",
    "num_unload_threads", "max_num_load_retries", "load_retry_interval_micros",
    "file_system_poll_wait_seconds", "flush_filesystem_caches", "tensorflow_session_parallelism",
    "tensorflow_session_config_file", "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism", "use_alts_credentials", "ssl_config_file",
    "platform_config_file", "per_process_gpu_memory_fraction", "saved_model_tags",
    "grpc_channel_arguments", "grpc_max_threads", "enable_model_warmup",
    "num_request_iterations_for_warmup", "version", "monitoring_config_file",
    "remove_unused_fields_from_bundle_metagraph", "prefer_tflite_model", "num_tflite_pools",
    "num_tflite_interpreters_per_pool", "enable_signature_method_name_check",
    "xla_cpu_compilation_enabled", "enable_profiler", "thread_pool_factory_config_file",
})


def _declare_messages():
    """Declares BatchingParameters and MonitoringConfig in a private descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)

    F = descriptor_pb2.FieldDescriptorProto
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def add_fields(message, fields):
        for name, number, kind, label, type_name in fields:
            field = message.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    int64_value, string_value = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    bool_value = ".google.protobuf.BoolValue"
    batching = descriptor_pb2.FileDescriptorProto(
        name="vcaption/session_bundle_config.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    add_fields(batching.message_type.add(name="BatchingParameters"), [
        ("max_batch_size", 1, F.TYPE_MESSAGE, optional, int64_value),
        ("batch_timeout_micros", 2, F.TYPE_MESSAGE, optional, int64_value),
        ("max_enqueued_batches", 3, F.TYPE_MESSAGE, optional, int64_value),
        ("num_batch_threads", 4, F.TYPE_MESSAGE, optional, int64_value),
        ("thread_pool_name", 5, F.TYPE_MESSAGE, optional, string_value),
        ("allowed_batch_sizes", 6, F.TYPE_INT64, repeated, None),
        ("pad_variable_length_inputs", 7, F.TYPE_BOOL, optional, None),
        ("enable_large_batch_splitting", 8, F.TYPE_MESSAGE, optional, bool_value),
        ("max_execution_batch_size", 9, F.TYPE_MESSAGE, optional, int64_value),
    ])
    pool.Add(batching)

    monitoring = descriptor_pb2.FileDescriptorProto(
        name="vcaption/monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
    add_fields(monitoring.message_type.add(name="PrometheusConfig"), [
        ("enable", 1, F.TYPE_BOOL, optional, None),
        ("path", 2, F.TYPE_STRING, optional, None),
    ])
    add_fields(monitoring.message_type.add(name="MonitoringConfig"), [
        ("prometheus_config", 1, F.TYPE_MESSAGE, optional, ".tensorflow.serving.PrometheusConfig"),
    ])
    pool.Add(monitoring)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")),
            get(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")))


BatchingParameters, MonitoringConfig = _declare_messages()


def _read_text(path: str, message):
    with open(path) as f:
        text = f.read()
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ValueError(f"{path}: not a valid {message.DESCRIPTOR.name}: {error}") from error


def read_model_server_config(path: str):
    """Parses a text-format `ModelServerConfig` (the `--model_config_file`)."""
    from tensorflow_serving.config import model_server_config_pb2

    return _read_text(path, model_server_config_pb2.ModelServerConfig())


def read_batching_parameters(path: str):
    """Parses a text-format `BatchingParameters` (the `--batching_parameters_file`)."""
    return _read_text(path, BatchingParameters())


def read_monitoring_config(path: str):
    """Parses a text-format `MonitoringConfig` (the `--monitoring_config_file`)."""
    return _read_text(path, MonitoringConfig())
