"""Region-feature throughput: crop-and-encode (the paper) versus one shared feature map.

    python -m vcaption.bench regions [--batch-size 32] [--regions 5 20] [--repeats 5]

Both region paths of `vcaption.retrieval.ranker.RegionRanker` at the `karpathy_ranker` preset sizes
(small CNN, 64x64 images, random weights) embed the same random boxes (region 0 the whole image):

* `crop`: every box cut out of the pixels, resized to the crop size and run through the CNN —
  one CNN forward pass per region, the inefficiency Karpathy & Fei-Fei point out themselves;
* `shared_map`: one CNN pass per image, each box pooled out of the feature map with
  `tf.image.crop_and_resize` (RoI pooling).

Only `embed_regions` is timed, traced once (first call excluded); rows run in interleaved rounds
and the median call is reported as regions/s, with the shared-map speed-up.
"""

from __future__ import annotations

import time

import numpy as np

from vcaption import cli
from vcaption.runtime import logs


def random_boxes(rng: np.random.Generator, batch: int, regions: int) -> np.ndarray:
    """[batch, regions, 4] normalised boxes; region 0 the whole image."""
    corner = rng.uniform(0.0, 0.7, size=(batch, regions, 2))
    side = rng.uniform(0.1, 0.3, size=(batch, regions, 2))
    boxes = np.concatenate([corner, np.minimum(corner + side, 1.0)], axis=-1).astype(np.float32)
    boxes[:, 0] = (0.0, 0.0, 1.0, 1.0)
    return boxes


def _models(vocab_size: int = 53):
    import keras

    from vcaption import presets
    from vcaption.retrieval.ranker import RegionRanker

    cfg = presets.get_preset("karpathy_ranker")
    args = dict(cfg.model_args)
    keras.utils.set_random_seed(0)
    crop = RegionRanker(vocab_size=vocab_size, image_size=cfg.data.image_size, **args)
    shared = RegionRanker(vocab_size=vocab_size, image_size=cfg.data.image_size,
                          **{**args, "region_features": "shared_map", "crop_size": 4})
    return {"crop": crop, "shared_map": shared}, cfg.data.image_size


def build_parser():
    parser = cli.make_parser("python -m vcaption.bench regions", __doc__.split("\n")[0])
    cli.add_argument(parser, "--batch-size", deprecated=["--batch"], type=int, default=32,
                     help="images per call")
    parser.add_argument("--regions", type=int, nargs="+", default=[5, 20],
                        help="regions per image (the paper: 19 detections + the whole image = 20)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (median reported)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    import tensorflow as tf

    models, image_size = _models()
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (args.batch_size, image_size, image_size, 3)).astype(np.uint8))
    print(f"region features, batch {args.batch_size} images of {image_size}x{image_size}, small CNN, "
          f"median of {args.repeats} calls")
    print(f"{'regions/image':>14}{'path':>12}{'ms/call':>10}{'regions/s':>12}")
    for regions in args.regions:
        boxes = tf.constant(random_boxes(rng, args.batch_size, regions))
        fns = {name: tf.function(m.embed_regions) for name, m in models.items()}
        for fn in fns.values():
            fn(images, boxes).numpy()  # trace + warm up
        times = {name: [] for name in fns}
        for _ in range(args.repeats):  # interleaved rounds: load changes hit both rows alike
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(images, boxes).numpy()
                times[name].append(time.perf_counter() - start)
        rates = {}
        for name, values in times.items():
            seconds = float(np.median(values))
            rates[name] = args.batch_size * regions / seconds
            print(f"{regions:>14}{name:>12}{1000 * seconds:>10.1f}{rates[name]:>12.0f}")
        print(f"{regions:>14}{'ratio':>12}{'':>10}{rates['shared_map'] / rates['crop']:>11.2f}x "
              "(shared_map / crop)")
    return 0
