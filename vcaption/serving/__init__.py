"""Serving: a TF Serving gRPC/REST client, a development server speaking the same API, a load test.

Production serves `saved_models/<name>/<version>/` with the stock `tensorflow_model_server` (see
`serving/README.md` at the repository root). This package holds what runs anywhere:

* `client`    — `PredictionService.Predict` over gRPC (TF Serving protos) and the REST `:predict`
                form; deadlines, retries with exponential backoff on UNAVAILABLE, many files per
                request. CLI: `python -m vcaption.serving.client --server HOST:PORT --model-name NAME FILES...`
* `devserver` — `PredictionService` (Predict, GetModelMetadata) and `ModelService`
                (GetModelStatus) over any SavedModel's signatures, read from a `models.config`.
* `servables` — loading versions by version policy, validating requests against signatures.
* `batching`  — server-side request batching (TF Serving's `BatchingParameters`).
* `config`    — writes the model server's `models.config` from the exports that exist (every
                export runs it). CLI: `python -m vcaption.serving.config --models-dir saved_models`
* `protos`    — the config protos (`ModelServerConfig`, `BatchingParameters`, `MonitoringConfig`)
                and the list of real `tensorflow_model_server` flags.
* `loadtest`  — QPS and latency percentiles per concurrency level, as a table and a PNG.
"""
