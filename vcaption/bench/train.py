"""Training throughput of LRCN-2f on precomputed features, against the machine's GEMM peaks.

    python -m vcaption.bench train [--hidden 1000] [--vocab 9000] [--steps 16] [--batch-size 100]
        [--features 4096] [--iterations 3] [--windows 3] [--dtype both|float32|mixed_bfloat16]
        [--jit] [--no-xla-optimizer-row] [--no-baseline]
        [--torch-python PYTHON] [--torch-peer PATH] [--no-torch-peer]

One process, one run: measures the float32 and bfloat16 GEMM peaks (a repeated square `tf.matmul`),
then trains `LRCNCaptioner(variant="2f")` on random data (all tokens non-pad, so every step
counts) with the training script's optimizer (Adam, clipvalue=5) and loss (`MaskedCaptionLoss`)
through a compiled `train_on_batch`, for each dtype policy, plus a naive Keras model
(`keras.layers.LSTM`, float32) of the same sizes. Each row reports examples/s (median over
`--windows` timed windows of `--iterations` steps each, after warm-up) and the achieved GFLOP/s
from the analytic model FLOPs (`model_flops`), also as a fraction of the float32 GEMM peak.

An extra mixed_bfloat16 row uses `XLAUpdateAdam` (same arithmetic as Adam, the whole optimizer
update one XLA cluster; the forward/backward stay on oneDNN). `--jit` compiles the whole train step
with XLA instead (`jit_compile=True`); on this CPU XLA's dots do not use the oneDNN/AMX bf16 kernels,
so that is several times slower for mixed_bfloat16 and no faster for float32.

When a Python that can `import torch` is at hand (this one, or `--torch-python`, e.g. a separate
venv: PyTorch is never a vcaption dependency), the PyTorch peer `../shared/bench/torch_lrcn2f.py`
(plain `nn.LSTM`, float32 and `torch.autocast` bf16) then runs at the same sizes in its own process
(`vcaption.bench.torch_peer`); one line then gives the ratio of vcaption's best LRCN-2f row to the
better PyTorch row (also `vs_pytorch` in the JSON), and a second the ceiling of that ratio on this
host: the examples/s of a step whose every FLOP ran at the bf16 GEMM peak, over the PyTorch row's
(on a 2-core AMD EPYC without AMX: GEMM ~400 GFLOP/s bf16, PyTorch bf16 ~205, so no implementation
can reach 2x there). Without torch one line says how to get them.

The machine is shared: compare the rows with each other and with the peaks of the same run.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

from vcaption import cli
from vcaption.bench import torch_peer
from vcaption.runtime import logs


def model_flops(hidden: int, vocab: int, steps: int, features: int, embedding: int | None = None,
                image_embedding: int | None = None) -> dict:
    """Analytic FLOPs of one LRCN-2f LSTM caption (forward; training = 3x), 2·m·n·k per matmul.

    Per example: image embedding F->D_v; image projection D_v->4H (once per caption); word
    embedding lookup (0); input projections E->4H (layer 1) and H->4H (layer 2) for all T steps;
    recurrent h·U H->4H for T steps and both layers; output projection H->V for T steps.
    Element-wise work (gates, softmax, Adam) is not counted.
    """
    embedding = embedding or hidden
    image_embedding = image_embedding or hidden
    gates = 4 * hidden
    terms = {
        "image_embedding": 2 * features * image_embedding,
        "image_projection": 2 * image_embedding * gates,
        "input_projection_1": 2 * steps * embedding * gates,
        "input_projection_2": 2 * steps * hidden * gates,
        "recurrent": 2 * 2 * steps * hidden * gates,
        "output_projection": 2 * steps * hidden * vocab,
    }
    forward = sum(terms.values())
    return {"terms": terms, "forward": forward, "train": 3 * forward}


def gemm_peak(dtype: str, n: int = 2048, repeats: int = 4, trials: int = 5) -> float:
    """GFLOP/s of a square n×n×n `tf.matmul` in `dtype`, best of `trials` (each `repeats` matmuls).

    Each of the `repeats` products has its own right-hand matrix: with one shared operand Grappler's
    common-subexpression elimination computes the product once, and the figure comes out `repeats`
    times too high (an earlier version of this bench reported 1,605 GFLOP/s bf16 on a 2-core AMD
    EPYC whose real rate is ~400).
    """
    import tensorflow as tf

    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([repeats, n, n]), dtype)

    @tf.function
    def run(a, b):
        acc = tf.zeros([n, n], dtype)
        for index in range(repeats):
            acc = acc + tf.matmul(a, b[index])
        return tf.reduce_sum(tf.cast(acc[:1, :1], tf.float32))

    run(a, b).numpy()
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        run(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return repeats * 2 * n ** 3 / best / 1e9


def random_batch(batch: int, steps: int, vocab: int, features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = {
        "visual": rng.standard_normal((batch, features)).astype("float32"),
        "caption_in": rng.integers(4, vocab, (batch, steps)).astype("int32"),
    }
    targets = rng.integers(4, vocab, (batch, steps)).astype("int32")  # no pads: every step counts
    return inputs, targets


def naive_keras_model(vocab: int, hidden: int, steps: int, features: int, dropout: float = 0.5):
    """LRCN-2f written the obvious way: `keras.layers.LSTM`, image concatenated at every step."""
    import keras

    visual = keras.Input(shape=(features,), name="visual")
    caption_in = keras.Input(shape=(steps,), dtype="int32", name="caption_in")
    image = keras.layers.Dense(hidden, name="image_embedding")(visual)
    image = keras.layers.Dropout(dropout)(image)
    image = keras.layers.RepeatVector(steps)(image)  # [B, T, D_v]
    x = keras.layers.Embedding(vocab, hidden, name="word_embedding")(caption_in)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.LSTM(hidden, return_sequences=True, name="lstm_1")(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Concatenate()([x, image])
    x = keras.layers.LSTM(hidden, return_sequences=True, name="lstm_2")(x)
    x = keras.layers.Dropout(dropout)(x)
    logits = keras.layers.Dense(vocab, name="logits")(x)
    return keras.Model({"visual": visual, "caption_in": caption_in}, logits)


def lrcn_model(vocab: int, hidden: int, features: int, dtype: str):
    from vcaption.captioning.lrcn import LRCNCaptioner

    return LRCNCaptioner(vocab, variant="2f", cell="lstm", hidden_units=hidden,
                         embedding_dim=hidden, image_embedding_dim=hidden, encoder="features",
                         feature_dim=features, dropout=0.5,
                         dtype=None if dtype == "float32" else dtype)


def xla_update_adam_class():
    """`keras.optimizers.Adam` whose update (clipping, moments, assignments over all variables)
    runs as one XLA-compiled function: ~40 element-wise kernels per variable become a few fused
    loops. Numerically identical to Adam in float32. TensorFlow backend, default strategy."""
    import keras
    import tensorflow as tf

    class XLAUpdateAdam(keras.optimizers.Adam):
        def _backend_apply_gradients(self, grads, trainable_variables):
            cache = self.__dict__.setdefault("_xla_updates", {})
            key = tuple(id(v) for v in trainable_variables)
            if key not in cache:
                parent = super()._backend_apply_gradients
                variables = list(trainable_variables)  # captured: Keras variables can't be args
                cache[key] = tf.function(lambda g: parent(g, variables), jit_compile=True)
            cache[key](list(grads))

    return XLAUpdateAdam


def time_training(model, inputs, targets, *, jit: bool, iterations: int, windows: int,
                  warmup: int = 2, xla_optimizer: bool = False) -> dict:
    """Compiles `model` like `vcaption.train` (Adam clipvalue=5, MaskedCaptionLoss) and times
    `train_on_batch`: examples/s per window of `iterations` steps, after `warmup` steps."""
    import keras

    from vcaption.losses import MaskedCaptionLoss

    optimizer_class = xla_update_adam_class() if xla_optimizer else keras.optimizers.Adam
    model.compile(optimizer=optimizer_class(1e-3, clipvalue=5.0), loss=MaskedCaptionLoss(),
                  jit_compile=jit)
    start = time.perf_counter()
    for _ in range(warmup):
        loss = model.train_on_batch(inputs, targets)
    warmup_seconds = time.perf_counter() - start
    batch = len(targets)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(iterations):
            loss = model.train_on_batch(inputs, targets)
        rates.append(iterations * batch / (time.perf_counter() - start))
    if not np.isfinite(loss):
        raise RuntimeError(f"non-finite loss {loss}")
    return {"examples_per_s": statistics.median(rates), "windows": [round(r, 1) for r in rates],
            "warmup_s": round(warmup_seconds, 1), "loss": round(float(loss), 3)}


def build_parser():
    parser = cli.make_parser("python -m vcaption.bench train", __doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=1000, help="LSTM units H")
    parser.add_argument("--vocab", type=int, default=9000, help="vocabulary size V")
    parser.add_argument("--steps", type=int, default=16, help="caption length T")
    cli.add_argument(parser, "--batch-size", deprecated=["--batch"], type=int, default=100,
                     help="examples per train step")
    parser.add_argument("--features", type=int, default=4096, help="precomputed feature size F")
    parser.add_argument("--iterations", type=int, default=3, help="train steps per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows (median reported)")
    parser.add_argument("--dtype", choices=("both", "float32", "mixed_bfloat16"), default="both",
                        help="dtype policy of the LRCN rows")
    parser.add_argument("--jit", action="store_true",
                        help="jit_compile=True for the LRCN train steps (slower on this CPU)")
    parser.add_argument("--no-xla-optimizer-row", action="store_true",
                        help="skip the mixed_bfloat16 row with XLAUpdateAdam")
    parser.add_argument("--no-baseline", action="store_true", help="skip the keras.layers.LSTM row")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="Python that runs the PyTorch peer (one that can import torch)")
    parser.add_argument("--torch-peer", default=str(torch_peer.default_peer_path()),
                        help="the PyTorch peer script")
    parser.add_argument("--no-torch-peer", action="store_true", help="skip the PyTorch peer rows")
    return parser


def compare_with_peer(rows: list[dict], peer: list[dict], train_flops: float, peak_gflops: float) -> dict:
    """vcaption's best LRCN-2f row, the better PyTorch row and the ratio of their examples/s; and
    the ceiling of that ratio on this host: the examples/s of a step whose every FLOP ran at the
    fastest GEMM rate (`peak_gflops`, the bf16 matmul) over the PyTorch row's."""
    ours = max((row for row in rows if row["model"].startswith("LRCN-2f")),
               key=lambda row: row["examples_per_s"])
    theirs = max(peer, key=lambda row: row["examples_per_s"])
    ceiling = peak_gflops * 1e9 / train_flops
    return {"vcaption_best": f"{ours['model']} {ours['dtype']}",
            "vcaption_examples_per_s": ours["examples_per_s"],
            "pytorch_best": f"{theirs['model']} {theirs['dtype']}",
            "pytorch_examples_per_s": theirs["examples_per_s"],
            "ratio": round(ours["examples_per_s"] / theirs["examples_per_s"], 2),
            "ceiling_examples_per_s": round(ceiling, 1),
            "ceiling_ratio": round(ceiling / theirs["examples_per_s"], 2)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)

    import keras
    import tensorflow as tf

    flops = model_flops(args.hidden, args.vocab, args.steps, args.features)
    peaks = {"float32": gemm_peak("float32"), "bfloat16": gemm_peak("bfloat16")}
    inputs, targets = random_batch(args.batch_size, args.steps, args.vocab, args.features)

    dtypes = ("float32", "mixed_bfloat16") if args.dtype == "both" else (args.dtype,)
    runs = [("LRCN-2f", dtype, args.jit, False) for dtype in dtypes]
    if "mixed_bfloat16" in dtypes and not args.no_xla_optimizer_row:
        runs.append(("LRCN-2f +XLAUpdateAdam", "mixed_bfloat16", args.jit, True))
    if not args.no_baseline:
        runs.append(("naive keras.layers.LSTM", "float32", False, False))

    rows = []
    for name, dtype, jit, xla_optimizer in runs:
        keras.utils.clear_session(free_memory=True)
        keras.utils.set_random_seed(0)
        if name.startswith("LRCN-2f"):
            model = lrcn_model(args.vocab, args.hidden, args.features, dtype)
        else:
            model = naive_keras_model(args.vocab, args.hidden, args.steps, args.features)
        result = time_training(model, inputs, targets, jit=jit, iterations=args.iterations,
                               windows=args.windows, xla_optimizer=xla_optimizer)
        gflops = result["examples_per_s"] * flops["train"] / 1e9
        rows.append({"model": name, "dtype": dtype, "jit_compile": jit,
                     "xla_optimizer_update": xla_optimizer,
                     "examples_per_s": round(result["examples_per_s"], 1),
                     "gflop_per_s": round(gflops, 1),
                     "fraction_of_fp32_peak": round(gflops / peaks["float32"], 3),
                     "fraction_of_bf16_peak": round(gflops / peaks["bfloat16"], 3),
                     "windows": result["windows"], "warmup_s": result["warmup_s"],
                     "loss": result["loss"]})
        del model

    peer, peer_message, comparison = [], None, None
    if not args.no_torch_peer:
        sizes = {"H": args.hidden, "V": args.vocab, "T": args.steps, "B": args.batch_size,
                 "F": args.features, "E": args.hidden}  # lrcn_model's embedding is H wide too
        peer, peer_message = torch_peer.peer_rows(args.torch_python, args.torch_peer, sizes,
                                                  steps=args.iterations * args.windows)
        for row in peer:  # the same analytic FLOPs as the other rows (the peer computes more)
            gflops = row["examples_per_s"] * flops["train"] / 1e9
            row.update(gflop_per_s=round(gflops, 1),
                       fraction_of_fp32_peak=round(gflops / peaks["float32"], 3),
                       fraction_of_bf16_peak=round(gflops / peaks["bfloat16"], 3))
        if peer and any(row["model"].startswith("LRCN-2f") for row in rows):
            comparison = compare_with_peer(rows, peer, flops["train"], max(peaks.values()))

    print(f"LRCN-2f H={args.hidden} V={args.vocab} T={args.steps} batch={args.batch_size} "
          f"F={args.features}: {flops['train'] / 1e9:.3f} GFLOP per training example "
          f"(forward {flops['forward'] / 1e9:.3f}, x3)")
    print(f"GEMM peak ({2048}^3 tf.matmul): float32 {peaks['float32']:.0f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16']:.0f} GFLOP/s")
    header = f"{'model':<24} {'dtype':<15} {'xla':<4} {'ex/s':>7} {'GFLOP/s':>8} " \
             f"{'%fp32pk':>8} {'%bf16pk':>8}  windows (ex/s)"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['model']:<24} {row['dtype']:<15} {'on' if row['jit_compile'] else 'off':<4} "
              f"{row['examples_per_s']:>7.1f} {row['gflop_per_s']:>8.1f} "
              f"{100 * row['fraction_of_fp32_peak']:>7.1f}% {100 * row['fraction_of_bf16_peak']:>7.1f}%"
              f"  {row['windows']}")
    for row in peer:
        print(f"{row['model']:<24} {row['dtype']:<15} {'-':<4} {row['examples_per_s']:>7.1f} "
              f"{row['gflop_per_s']:>8.1f} {100 * row['fraction_of_fp32_peak']:>7.1f}% "
              f"{100 * row['fraction_of_bf16_peak']:>7.1f}%  torch {row['torch']}, "
              f"{row['threads']} threads")
    if peer_message:
        print(peer_message)
    if comparison:
        print(f"vcaption best ({comparison['vcaption_best']}) {comparison['vcaption_examples_per_s']:.1f} "
              f"ex/s / PyTorch best ({comparison['pytorch_best']}) "
              f"{comparison['pytorch_examples_per_s']:.1f} ex/s = {comparison['ratio']:.2f}x")
        print(f"ceiling on this host: every FLOP at the GEMM peak = "
              f"{comparison['ceiling_examples_per_s']:.1f} ex/s = {comparison['ceiling_ratio']:.2f}x the PyTorch best")
    print(json.dumps({
        "benchmark": "train", "hidden": args.hidden, "vocab": args.vocab, "steps": args.steps,
        "batch": args.batch_size, "features": args.features,
        "flops_per_example": {"forward": flops["forward"], "train": flops["train"],
                              "terms": flops["terms"]},
        "gemm_peak_gflop_per_s": {k: round(v, 1) for k, v in peaks.items()},
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "rows": rows,
        "torch_peer_rows": peer,
        "torch_peer_skipped": peer_message,
        "vs_pytorch": comparison,
    }))
    return 0
