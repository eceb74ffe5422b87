"""Caption throughput of in-graph beam search versus a Python loop over the model's step (im2txt).

    python -m vcaption.bench decode [--batch-size 32] [--beam-size 3] [--repeats 5] [--model FILE|RUN_DIR]

Both decoders run on the same weights, from the same initial states, in one process: an LRCN-2f at
the `lrcn_2f` preset sizes (hidden 256, embedding 128, small_cnn at 64×64, vocabulary 53, random
weights) or a trained captioner (`--model`: its `.keras` file, or a training run directory). Rows:

* `in_graph`: `vcaption.decoding.beam_search` inside one traced `tf.function` (the export's path);
* `python_loop`: `vcaption.decoding_reference.python_loop_beam_search` calling `model.step`
  eagerly once per time step, hypotheses in Python lists — the im2txt approach;
* `python_loop_traced_step`: the same loop with the step traced once (`tf.function(model.step)`),
  closest to im2txt's `session.run` per step;
* `python_loop_per_image`: the eager loop run on one image at a time, as im2txt's
  `CaptionGenerator.beam_search` is used (batch = the k beams of one image);
* `in_graph_xla`: the in-graph search compiled with XLA (`jit_compile=True`), for reference.

Only decoding is timed (the image encoder runs once, before; it costs the same for all rows);
the first call of each row (tracing, warm-up) is excluded, rows are timed in interleaved
rounds and the median call is reported. The run checks that every row returns
the same best caption for every image, then prints captions/s and the in-graph speed-up.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from vcaption import cli
from vcaption.runtime import logs

SHAPES_VOCAB_SIZE = 53


def _build_model(model_path: str | None, vocab_size: int):
    import keras

    from vcaption import presets, registry
    from vcaption.captioning import lrcn

    if model_path:
        if os.path.isdir(model_path):  # a training run directory
            model_path = os.path.join(model_path, "model.keras")
        return registry.load_model(model_path)
    keras.utils.set_random_seed(0)
    args = dict(presets.get_preset("lrcn_2f").model_args)
    args.pop("dtype", None)  # float32: the decoders are compared at one precision
    model = lrcn.LRCNCaptioner(vocab_size=vocab_size, **args)
    # An untrained model puts near-uniform mass on <end> and says "<end>" at once: nothing would
    # be decoded. A Zipf unigram bias with a rare <end> and a larger softmax kernel make random
    # weights produce long, image-dependent captions, the steady state of a trained model.
    counts = np.zeros(vocab_size)
    counts[4:] = 1.0 / np.arange(1, vocab_size - 3)
    counts[2] = 1e-3 * counts[4:].sum()
    model.initialize_output_bias(counts)
    for kernel in (model.output_projection.kernel, model.image_projection.kernel):
        kernel.assign(kernel * 8.0)
    return model


def _call_seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def build_parser():
    parser = cli.make_parser("python -m vcaption.bench decode", __doc__.split("\n")[0])
    cli.add_argument(parser, "--batch-size", deprecated=["--batch"], type=int, default=32,
                     help="images per decode call")
    parser.add_argument("--beam-size", type=int, default=3, help="beam width")
    parser.add_argument("--max-length", type=int, default=17, help="longest caption, in tokens")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median kept)")
    cli.add_argument(parser, "--model", deprecated=["--run"], default=None,
                     help="a captioner's .keras file or a training run directory (its model.keras); "
                          "default: random lrcn_2f-sized weights")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)

    import tensorflow as tf

    from vcaption import decoding
    from vcaption.decoding_reference import python_loop_beam_search

    model = _build_model(args.model, SHAPES_VOCAB_SIZE)
    rng = np.random.default_rng(0)
    if model.encoder_name == "features":
        visual = rng.normal(size=(args.batch_size, model.feature_dim)).astype("float32")
    else:
        side = model.image_size
        # Two flat colours per image (left / right halves): a random CNN tells these apart,
        # unlike i.i.d. noise, which all looks alike to it.
        visual = np.empty((args.batch_size, side, side, 3), np.float32)
        visual[:, :, : side // 2] = rng.integers(0, 256, size=(args.batch_size, 1, 1, 3))
        visual[:, :, side // 2:] = rng.integers(0, 256, size=(args.batch_size, 1, 1, 3))
    state = model.initial_state(model.encode_visual(tf.constant(visual)))  # leaves [batch, ...]
    search = dict(vocab_size=model.vocab_size, beam_size=args.beam_size,
                  max_length=args.max_length, n_best=1)

    in_graph = tf.function(lambda s: decoding.beam_search(model.step, s, **search))
    in_graph_xla = tf.function(lambda s: decoding.beam_search(model.step, s, **search),
                               jit_compile=True)
    traced_step = tf.function(model.step)
    per_image = [tf.nest.map_structure(lambda x, b=b: x[b:b + 1], state)  # leaves [1, ...]
                 for b in range(args.batch_size)]

    def one_image_at_a_time():
        results = [python_loop_beam_search(model.step, s, **search) for s in per_image]
        return decoding.DecodeResult(*[np.concatenate(parts) for parts in zip(*results)])

    rows = {
        "in_graph": lambda: in_graph(state),
        "in_graph_xla": lambda: in_graph_xla(state),
        "python_loop": lambda: python_loop_beam_search(model.step, state, **search),
        "python_loop_traced_step": lambda: python_loop_beam_search(traced_step, state, **search),
        "python_loop_per_image": one_image_at_a_time,
    }
    ids = {name: np.asarray(fn().ids)[:, 0] for name, fn in rows.items()}  # warm-up; [batch, L]
    # Rows are interleaved round by round and the median kept: the machine is shared, and a
    # burst of load should not land on one row only.
    times = {name: [] for name in rows}
    for round_index in range(args.repeats):
        for name, fn in rows.items():
            if name == "python_loop_per_image" and round_index >= 2:
                continue  # seconds per call; two rounds suffice
            times[name].append(_call_seconds(fn)[0])
    seconds = {name: float(np.median(t)) for name, t in times.items()}

    same = {name: bool(np.array_equal(ids[name], ids["in_graph"])) for name in rows}
    report = {"benchmark": "decode", "batch": args.batch_size, "beam_size": args.beam_size,
              "max_length": args.max_length, "vocab_size": model.vocab_size,
              "rows": {name: {"seconds_per_batch": round(s, 4),
                              "captions_per_s": round(args.batch_size / s, 1)}
                       for name, s in seconds.items()},
              "same_captions": same,
              "distinct_captions": len({tuple(row) for row in ids["in_graph"]}),
              "mean_length": float(np.mean(np.sum(ids["in_graph"] != 0, axis=-1)))}
    for name, row in report["rows"].items():
        print(f"decode  {name:<24} batch={args.batch_size} k={args.beam_size}  "
              f"{row['seconds_per_batch'] * 1e3:9.1f} ms/batch  {row['captions_per_s']:9.1f} captions/s"
              f"  same captions as in_graph: {same[name]}")
    print(f"{report['distinct_captions']} distinct best captions in the batch, "
          f"mean length {report['mean_length']:.1f} tokens")
    for name in ("python_loop", "python_loop_traced_step", "python_loop_per_image"):
        ratio = seconds[name] / seconds["in_graph"]
        report[f"speedup_over_{name}"] = round(ratio, 2)
        print(f"in-graph speed-up over {name}: {ratio:.1f}x")
    print(json.dumps(report))
    if not all(same.values()):
        print("ERROR: the decoders disagree on some captions")
        return 1
    return 0
