"""Export a training run: `python -m vcaption.export --run DIR [--output saved_models]`."""

from __future__ import annotations

import argparse
import json
import os
import sys

import tensorflow as tf

from vcaption.captioning.export import export_captioner
from vcaption.config import DecodeConfig

# ----------------------------------------------------------------------------------------------
# Command line.


def export_run(run_dir: str, output: str = "saved_models", name: str | None = None,
               beam_size: int | None = None, n_best: int | None = None) -> str:
    """Exports a training run directory (`model.keras` + `config.json`); returns the path."""
    import keras

    from vcaption.captioning import lrcn, mrnn  # noqa: F401  (registers the classes for loading)

    with tf.io.gfile.GFile(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    decode = DecodeConfig(**config.get("decode", {}))
    overrides = {k: v for k, v in (("beam_size", beam_size), ("n_best", n_best)) if v is not None}
    if overrides:
        decode = DecodeConfig(**{**decode.__dict__, **overrides})
    if decode.n_best > decode.beam_size:
        decode = DecodeConfig(**{**decode.__dict__, "n_best": decode.beam_size})
    name = name or (config.get("export") or {}).get("name") or config["name"]
    image_size = model.image_size or config.get("data", {}).get("image_size")
    return export_captioner(model, os.path.join(config["data_dir"], "vocab.txt"), output, name,
                            image_size, decode)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcaption.export", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--run", required=True, help="training run directory")
    parser.add_argument("--beam-size", type=int, default=None, help="default: the run's decode")
    parser.add_argument("--n-best", type=int, default=None, help="captions returned per image")
    parser.add_argument("--output", default="saved_models", help="root of <name>/<version>/")
    parser.add_argument("--name", default=None, help="model name; default: the preset name")
    args = parser.parse_args(argv)
    path = export_run(args.run, args.output, args.name, args.beam_size, args.n_best)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
