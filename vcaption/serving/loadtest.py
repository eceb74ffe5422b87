"""Load test of a TF Serving gRPC endpoint: QPS, latency percentiles and errors per concurrency.

    python -m vcaption.serving.loadtest --server localhost:8500 --model-name lrcn_2f \\
        --concurrency 1,4,16 --duration 30 [--images a.jpg b.jpg | DIR | 'PATTERN'] [--batch-size 1] \\
        [--signature serving_default] [--output /tmp/loadtest]

For each concurrency level C, C closed-loop clients (threads sharing one HTTP/2 channel) send
`Predict` back to back for `--duration` seconds, each request carrying `--batch-size` images
(from `--images`; default one generated JPEG). It prints a table

| concurrency | requests | QPS | p50 ms | p95 ms | p99 ms | error rate |

and writes `loadtest.json` and `loadtest.png` (throughput and latency percentiles against
concurrency) to `--output`. QPS counts successful requests per second of wall time; latencies
are those of successful requests; errors are counted by status code.

Example:
```python
results = run([1, 16], 10.0, "localhost:8500", "lrcn_2f", {"image_bytes": [jpeg]})
print(format_table(results))
```
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time

import grpc
import numpy as np

from vcaption import cli
from vcaption.runtime import logs


@dataclasses.dataclass
class LevelResult:
    """One concurrency level's figures (latencies in milliseconds)."""
    label: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    qps: float
    p50: float
    p95: float
    p99: float
    error_codes: dict

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 0.0


def run_level(stub, request, concurrency: int, duration: float, timeout: float = 30.0,
              label: str = "") -> LevelResult:
    """`concurrency` closed-loop clients sending `request` for `duration` seconds."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[dict] = [{} for _ in range(concurrency)]
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        start_gate.wait()
        while time.monotonic() < stop_at[0]:
            begin = time.monotonic()
            try:
                stub.Predict(request, timeout=timeout)
                latencies[i].append(time.monotonic() - begin)
            except grpc.RpcError as error:
                name = error.code().name
                errors[i][name] = errors[i].get(name, 0) + 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    begin = time.monotonic()
    stop_at[0] = begin + duration
    start_gate.wait()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - begin
    done = np.array([x for per in latencies for x in per]) * 1000.0  # ms
    codes: dict[str, int] = {}
    for per in errors:
        for name, count in per.items():
            codes[name] = codes.get(name, 0) + count
    p50, p95, p99 = (np.percentile(done, [50, 95, 99]).tolist() if len(done)
                     else [float("nan")] * 3)
    return LevelResult(label, concurrency, len(done), sum(codes.values()), seconds,
                       len(done) / seconds, p50, p95, p99, codes)


def run(levels, duration: float, server: str, model: str, inputs: dict,
        signature: str = "serving_default", warmup: int = 5, timeout: float = 30.0,
        label: str = "") -> list[LevelResult]:
    """Runs every concurrency level in `levels` against `server`; returns their results.

    `warmup` requests are sent (and must succeed) first, so that tracing and caches do not
    count against the first level.
    """
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from vcaption.serving.client import ServingClient

    client = ServingClient(server, timeout=timeout, retries=5)
    try:
        request = client.predict_request(model, inputs, signature)
        for _ in range(warmup):
            client.call(client.prediction.Predict, request)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(client.channel)
        return [run_level(stub, request, c, duration, timeout, label) for c in levels]
    finally:
        client.close()


def format_table(results: list[LevelResult]) -> str:
    lines = ["| run | concurrency | requests | QPS | p50 ms | p95 ms | p99 ms | error rate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.label or '-'} | {r.concurrency} | {r.requests} | {r.qps:.1f} | "
                     f"{r.p50:.1f} | {r.p95:.1f} | {r.p99:.1f} | {r.error_rate:.2%} |")
    return "\n".join(lines)


def plot(results: list[LevelResult], path: str, title: str = "load test") -> str:
    """Throughput and p50/p95/p99 latency against concurrency, one line per run label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_qps, ax_lat) = plt.subplots(1, 2, figsize=(10, 4))
    for label in dict.fromkeys(r.label for r in results):
        rows = [r for r in results if r.label == label]
        x = [r.concurrency for r in rows]
        line, = ax_qps.plot(x, [r.qps for r in rows], marker="o", label=label or "QPS")
        for pct, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):  # one colour per run
            ax_lat.plot(x, [getattr(r, pct) for r in rows], style, marker="o",
                        color=line.get_color(), label=f"{label} {pct}".strip())
    for ax, ylabel in ((ax_qps, "successful requests / s"), (ax_lat, "latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save(results: list[LevelResult], output: str, title: str = "load test") -> tuple[str, str]:
    """Writes `loadtest.json` and `loadtest.png` under `output`; returns their paths."""
    os.makedirs(output, exist_ok=True)
    json_path = os.path.join(output, "loadtest.json")
    with open(json_path, "w") as f:
        json.dump([dict(dataclasses.asdict(r), error_rate=r.error_rate) for r in results], f,
                  indent=1)
    return json_path, plot(results, os.path.join(output, "loadtest.png"), title)


def image_files(specs) -> list[str]:
    """`--images` values (files, directories, glob patterns) -> the files, in order."""
    import glob

    files = []
    for spec in specs:
        if os.path.isdir(spec):
            files += sorted(p for p in glob.glob(os.path.join(spec, "*")) if os.path.isfile(p))
        elif any(c in spec for c in "*?["):
            files += sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        else:
            files.append(spec)
    if specs and not files:
        raise SystemExit(f"--images {' '.join(specs)}: no files")
    return files


def build_parser():
    parser = cli.make_parser("python -m vcaption.serving.loadtest", __doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="HOST:PORT of the gRPC endpoint")
    cli.add_argument(parser, "--model-name", deprecated=["--model"], required=True,
                     help="the served model's name (TF Serving model_spec.name)")
    parser.add_argument("--signature", default="serving_default", help="signature to call")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per level")
    parser.add_argument("--images", nargs="*", default=None,
                        help="image files, directories or file patterns; default: a generated JPEG")
    cli.add_argument(parser, "--image-input", deprecated=["--image_input"], default="image_bytes",
                     help="the string input the images go to")
    cli.add_argument(parser, "--batch-size", deprecated=["--batch"], type=int, default=1,
                     help="images per request")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per request (s)")
    parser.add_argument("--label", default="", help="name of this run in the table and the plot")
    parser.add_argument("--output", default="/tmp/vcaption_loadtest",
                        help="directory for loadtest.json and loadtest.png")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)

    if args.images:
        payloads = []
        for path in image_files(args.images):
            with open(path, "rb") as f:
                payloads.append(f.read())
    else:
        from vcaption.runtime.export_core import warmup_jpeg

        payloads = [warmup_jpeg(64)]
    batch = [payloads[i % len(payloads)] for i in range(args.batch_size)]
    levels = [int(c) for c in args.concurrency.split(",")]
    results = run(levels, args.duration, args.server, args.model_name,
                  {args.image_input: np.array(batch, dtype=object)}, args.signature,
                  timeout=args.timeout, label=args.label)
    print(format_table(results))
    json_path, png = save(results, args.output, f"{args.model_name} / {args.signature}")
    print(f"results -> {json_path}\nplot -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
