"""Caption throughput of in-graph beam search versus a Python loop over the model's step (im2txt).

    python -m vcaption.bench decode [--batch 32] [--beam-size 3] [--repeats 5] [--run DIR]

Both decoders run on the same weights, from the same initial states, in one process: an LRCN-2f at
the `lrcn_2f` preset sizes (hidden 256, embedding 128, small_cnn at 64×64, vocabulary 53, random
weights) or the model of a training run (`--run DIR/model.keras`). Rows:

* `in_graph`: `vcaption.decoding.beam_search` inside one traced `tf.function` (the export's path);
* `python_loop`: `vcaption.decoding_reference.python_loop_beam_search` calling `model.step`
  eagerly once per time step, hypotheses in Python lists — the im2txt approach;
* `python_loop_traced_step`: the same loop with the step traced once (`tf.function(model.step)`),
  closest to im2txt's `session.run` per step.

Only decoding is timed (the image encoder runs once, before; it costs the same for all rows);
the first call of each row (tracing, warm-up) is excluded. The run checks that every row returns
the same best caption for every image, then prints captions/s and the in-graph speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

SHAPES_VOCAB_SIZE = 53


def _build_model(run_dir: str | None, vocab_size: int):
    import keras

    from vcaption import config as config_lib
    from vcaption.models import lrcn, mrnn  # noqa: F401  (registers the classes for loading)

    if run_dir:
        return keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    keras.utils.set_random_seed(0)
    args = dict(config_lib.lrcn_2f().model_args)
    return lrcn.LRCNCaptioner(vocab_size=vocab_size, **args)


def _time(fn, repeats: int) -> tuple[float, object]:
    result = fn()  # warm-up: tracing, first-call allocations
    start = time.perf_counter()
    for _ in range(repeats):
        result = fn()
    return (time.perf_counter() - start) / repeats, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcaption.bench decode")
    parser.add_argument("--batch", type=int, default=32, help="images per decode call")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row")
    parser.add_argument("--run", default=None, help="a training run directory (model.keras)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from vcaption import decoding
    from vcaption.decoding_reference import python_loop_beam_search

    model = _build_model(args.run, SHAPES_VOCAB_SIZE)
    rng = np.random.default_rng(0)
    if model.encoder_name == "features":
        visual = rng.normal(size=(args.batch, model.feature_dim)).astype("float32")
    else:
        side = model.image_size
        visual = rng.integers(0, 256, size=(args.batch, side, side, 3)).astype("float32")
    state = model.initial_state(model.encode_visual(tf.constant(visual)))  # leaves [batch, ...]
    search = dict(vocab_size=model.vocab_size, beam_size=args.beam_size,
                  max_length=args.max_length, n_best=1)

    in_graph = tf.function(lambda s: decoding.beam_search(model.step, s, **search))
    traced_step = tf.function(model.step)
    rows = {
        "in_graph": lambda: in_graph(state),
        "python_loop": lambda: python_loop_beam_search(model.step, state, **search),
        "python_loop_traced_step": lambda: python_loop_beam_search(traced_step, state, **search),
    }
    seconds, ids = {}, {}
    for name, fn in rows.items():
        # The eager loop is the slow one: time it once after the warm-up.
        repeats = args.repeats if name == "in_graph" else max(1, args.repeats // 5)
        seconds[name], result = _time(fn, repeats)
        ids[name] = np.asarray(result.ids)[:, 0]  # best caption, [batch, length]

    same = {name: bool(np.array_equal(ids[name], ids["in_graph"])) for name in rows}
    report = {"benchmark": "decode", "batch": args.batch, "beam_size": args.beam_size,
              "max_length": args.max_length, "vocab_size": model.vocab_size,
              "rows": {name: {"seconds_per_batch": round(s, 4),
                              "captions_per_s": round(args.batch / s, 1)}
                       for name, s in seconds.items()},
              "same_captions": same}
    for name, row in report["rows"].items():
        print(f"decode  {name:<24} batch={args.batch} k={args.beam_size}  "
              f"{row['seconds_per_batch'] * 1e3:9.1f} ms/batch  {row['captions_per_s']:9.1f} captions/s"
              f"  same captions as in_graph: {same[name]}")
    for name in ("python_loop", "python_loop_traced_step"):
        ratio = seconds[name] / seconds["in_graph"]
        report[f"speedup_over_{name}"] = round(ratio, 2)
        print(f"in-graph speed-up over {name}: {ratio:.1f}x")
    print(json.dumps(report))
    if not all(same.values()):
        print("ERROR: the decoders disagree on some captions")
        return 1
    return 0
