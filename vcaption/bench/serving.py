"""Server-side batching: throughput and tail latency of the development server, batched vs not.

    python -m vcaption.bench serving [--duration 20] [--size small|preset]
        [--model saved_models/lrcn_2f]
        [--batching-parameters-file serving/batching_parameters_cpu.txt] [--output DIR]

Exports an LRCN-2f with random weights biased to say long captions (as in `bench decode`) — at
`--size small` (hidden 64, small_cnn at 32x32; default) or at the `lrcn_2f` preset sizes
(`--size preset`) — unless `--model` names an export, then runs the development
server three times as a subprocess on a free loopback port and load-tests each with
`vcaption.serving.loadtest` (one JPEG per request):

* without batching, TensorFlow's default thread pools: 1 and 16 clients;
* without batching, `--tensorflow_intra_op_parallelism 1 --tensorflow_inter_op_parallelism 1`
  (faster for a single small request on this CPU): 1 client;
* with `--enable_batching --batching_parameters_file ...` and the same 1x1 thread pools:
  1, 4 and 16 clients.

It prints the table and the two ratios of the issue — throughput of batched at 16 clients over
unbatched at 1 client (target >= 5x), and their p99 ratio (target <= 3x) — against the *best*
unbatched single-client row (`batching_ratios`), and writes `loadtest.json` / `loadtest.png`
under `--output`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

from vcaption import cli
from vcaption.runtime import logs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Model sizes: the `lrcn_2f` preset (what `python -m vcaption.train` exports), and a small one
# whose per-image compute is small next to the per-request overhead, as on a GPU.
SIZES = {"preset": None,
         "small": {"variant": "2f", "hidden_units": 64, "embedding_dim": 32,
                   "encoder": "small_cnn", "image_size": 32, "dropout": 0.0}}


def _export_captioner(root: str, size: str) -> str:
    from vcaption import text
    from vcaption.captioning import export
    from vcaption.bench.decode import SHAPES_VOCAB_SIZE, _build_model
    from vcaption.config import DecodeConfig
    from vcaption.captioning.lrcn import LRCNCaptioner

    words = [f"w{i}" for i in range(SHAPES_VOCAB_SIZE - len(text.RESERVED_TOKENS))]
    vocab = text.Vocabulary.write(words, os.path.join(root, "vocab.txt"))
    if SIZES[size] is None:
        model = _build_model(None, SHAPES_VOCAB_SIZE)  # random weights that say long captions
    else:
        model = LRCNCaptioner(vocab_size=SHAPES_VOCAB_SIZE, **SIZES[size])
        unigram = np.zeros(SHAPES_VOCAB_SIZE)  # Zipf words, a rare <end>: long captions
        unigram[4:] = 1.0 / np.arange(1, SHAPES_VOCAB_SIZE - 3)
        unigram[2] = 1e-3 * unigram[4:].sum()
        model.initialize_output_bias(unigram)
    return export.export_captioner(model, vocab, os.path.join(root, "saved_models"), "lrcn_2f",
                                   model.image_size, DecodeConfig(beam_size=3, n_best=3))


def start_devserver(config_path: str, extra_args=()) -> tuple[subprocess.Popen, int]:
    """Starts `python -m vcaption.serving.devserver` on a free port; returns (process, port)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vcaption.serving.devserver", "--model_config_file", config_path,
         "--port", "0", "--file_system_poll_wait_seconds", "0", *extra_args],
        stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("serving gRPC on"):
            return process, int(line.split()[3].rstrip(",").rsplit(":", 1)[1])
    raise RuntimeError(f"devserver exited with {process.wait()}")


# The model server's thread-pool flags as the CPU deployment sets them (serving/README.md).
ONE_THREAD_EACH = ["--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "1"]


def batching_ratios(results) -> list[str]:
    """The issue's two ratios, batched at 16 clients against unbatched at 1 client.

    The unbatched baseline is the best single-client figure over every unbatched server setting
    measured: the highest QPS for the throughput ratio, the lowest p99 for the latency ratio, so
    that a slow baseline never flatters batching.
    """
    singles = [r for r in results if r.label.startswith("unbatched") and r.concurrency == 1]
    batched = [r for r in results if r.label.startswith("batched") and r.concurrency == 16]
    fastest = max(singles, key=lambda r: r.qps)
    tightest = min(singles, key=lambda r: r.p99)
    lines = []
    for best in batched:
        lines.append(f"throughput {best.label} c=16 / {fastest.label} c=1: "
                     f"{best.qps / fastest.qps:.2f}x (target >= 5x)")
        lines.append(f"p99 {best.label} c=16 / {tightest.label} c=1: "
                     f"{best.p99 / tightest.p99:.2f}x (target <= 3x)")
    return lines


def build_parser():
    parser = cli.make_parser("python -m vcaption.bench serving", __doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="size of the exported captioner (ignored with --model)")
    cli.add_argument(parser, "--model", deprecated=["--export_dir"], default=None,
                     help="a captioner export: a model directory holding <version>/ directories (its "
                          "latest version is served) or one version directory (default: export a "
                          "small one)")
    cli.add_argument(parser, "--batching-parameters-file", deprecated=["--batching_parameters_file"],
                     default=os.path.join(REPO, "serving", "batching_parameters_cpu.txt"),
                     help="the development server's --batching_parameters_file in the batched runs")
    parser.add_argument("--output", default="/tmp/vcaption_bench_serving",
                        help="directory for loadtest.json, loadtest.png and the exports")
    return parser


def model_config(name: str, model: str) -> str:
    """A text ModelServerConfig serving `model` (a model directory holding <version>/ directories:
    its latest version; or one version directory: that version) under `name`."""
    model = os.path.abspath(model)
    policy = ""
    if os.path.exists(os.path.join(model, "saved_model.pb")):  # a version directory
        model, version = os.path.split(model)
        policy = f" model_version_policy {{ specific {{ versions: {int(version)} }} }}"
    return (f'model_config_list {{ config {{ name: "{name}" base_path: "{model}" '
            f'model_platform: "tensorflow"{policy} }} }}\n')


def main(argv=None) -> int:
    from vcaption.serving import loadtest

    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)

    os.makedirs(args.output, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench_", dir=args.output)
    model = args.model or os.path.dirname(_export_captioner(work, args.size))
    config_path = os.path.join(work, "models.config")
    with open(config_path, "w") as f:
        f.write(model_config("lrcn_2f", model))
    from vcaption.runtime.export_core import warmup_jpeg

    inputs = {"image_bytes": np.array([warmup_jpeg(64)], dtype=object)}
    batching = ["--enable_batching", "--batching_parameters_file", args.batching_parameters_file]
    results = []
    for label, extra, levels in [
            ("unbatched", [], [1, 16]),
            ("unbatched, 1x1 threads", ONE_THREAD_EACH, [1]),
            ("batched, 1x1 threads", batching + ONE_THREAD_EACH, [1, 4, 16])]:
        process, port = start_devserver(config_path, extra)
        try:
            results += loadtest.run(levels, args.duration, f"127.0.0.1:{port}", "lrcn_2f",
                                    inputs, warmup=10, label=label)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(loadtest.format_table(results))
    for line in batching_ratios(results):
        print(line)
    json_path, png = loadtest.save(results, args.output, "lrcn_2f: batched vs unbatched")
    print(f"results -> {json_path}\nplot -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
