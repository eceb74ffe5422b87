"""Align sentences to image regions with a trained ranker (Karpathy & Fei-Fei §3.1.4) and score it.

    python -m vcaption.evaluate --task alignment --model runs/karpathy_ranker/model.keras \\
        --data DIR --scenes WORLD/scenes.json [--output DIR]

chooses β of the chain MRF (Eqs. 10-12) on the val split, reports the alignment accuracy on the
test split (content words aligned to the true box of their object, `vcaption.retrieval.alignment_metrics`)
beside β = 0 (word-wise argmax) and a very large β (one region per sentence), and writes

- `alignment_metrics.json` (the command only; the ranker's training run puts it in metrics.json);
- `alignments_test.json`: every test sentence's snippets in Visual Genome's
  `region_descriptions.json` format (the region-snippet dataset of §3.2 / Table 4);
- `alignment_test.png`: a figure like the paper's Fig. 5 — image, boxes, and the words aligned to
  each box with their scores v_tᵀ s_j.
"""

from __future__ import annotations

import io
import json
import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from vcaption.retrieval import alignment_metrics, mrf
from vcaption.retrieval.embedding import SENTENCES_PER_IMAGE, embed_split

# β grid, in units of the mean |v_tᵀ s_j| on val so that it does not depend on the score scale.
BETA_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
ONE_REGION_BETA = 1e6
BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def unary_scale(embedded: Mapping, sentences_per_image: int = SENTENCES_PER_IMAGE,
                sample: int = 200) -> float:
    """Mean |v_tᵀ s_j| over the real regions and words of the first `sample` images."""
    values = []
    for i in range(min(sample, len(embedded["image_ids"]))):
        keep = alignment_metrics.real_regions(embedded["boxes"][i])
        for j in range(i * sentences_per_image, (i + 1) * sentences_per_image):
            n = int(np.sum(embedded["word_ids"][j] != 0))
            values.append(np.abs(embedded["words"][j][:n] @ embedded["regions"][i][keep].T).ravel())
    return float(np.mean(np.concatenate(values))) if values else 1.0


def region_snippet_dataset(embedded: Mapping, beta: float, source_size: Sequence[int],
                           sentences_per_image: int = SENTENCES_PER_IMAGE) -> list[dict]:
    """Every sentence aligned (Viterbi) and cut into snippets, as Visual Genome region descriptions."""
    out, next_id = [], 1
    for i, image_id in enumerate(embedded["image_ids"]):
        keep = alignment_metrics.real_regions(embedded["boxes"][i])
        pieces = []
        for j in range(i * sentences_per_image, (i + 1) * sentences_per_image):
            tokens = embedded["texts"][j].split()
            n = min(len(tokens), int(np.sum(embedded["word_ids"][j] != 0)))
            if n == 0:
                continue
            assignment, unary = alignment_metrics.align_sentence(
                embedded["regions"][i], embedded["words"][j][:n], beta, keep)
            scores = np.zeros((n, len(embedded["boxes"][i])))
            scores[:, keep] = unary
            pieces += mrf.snippets(assignment, tokens[:n], scores)
        entry = mrf.visual_genome_regions(image_id, embedded["boxes"][i], source_size, pieces, next_id)
        next_id += len(pieces)
        out.append(entry)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _write_bytes(path: str, content: bytes) -> str:
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(content)
    return path


def alignment_png(image: np.ndarray, boxes: np.ndarray, tokens: Sequence[str], assignment: Sequence[int],
                  unary: np.ndarray, title: str = "") -> bytes:
    """Fig. 5 style, as PNG bytes: the image with its boxes, and each box's aligned words with
    their scores.

    Args:
        image: uint8 [H, W, 3].
        boxes: [M, 4] normalised (ymin, xmin, ymax, xmax); region 0 the whole image.
        tokens: the sentence's words.
        assignment: region index of each word.
        unary: [N, M] v_tᵀ s_j.
        title: figure title.
    """
    import matplotlib.patches as patches

    plt = _pyplot()
    height, width = image.shape[:2]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={"width_ratios": [1, 1.2]})
    left.imshow(image, interpolation="nearest")
    left.axis("off")
    used = sorted(set(int(a) for a in assignment))
    for region in used:
        colour = BOX_COLOURS[region % len(BOX_COLOURS)]
        ymin, xmin, ymax, xmax = boxes[region]
        inset = 0.5 if region else 1.5  # the whole-image box drawn just inside the frame
        left.add_patch(patches.Rectangle((xmin * width - 0.5 + inset, ymin * height - 0.5 + inset),
                                         (xmax - xmin) * width - 2 * inset, (ymax - ymin) * height - 2 * inset,
                                         fill=False, edgecolor=colour, linewidth=2.5))
    right.axis("off")
    y = 0.95
    right.text(0.0, y, " ".join(tokens), fontsize=10, fontweight="bold", transform=right.transAxes, va="top",
               wrap=True)
    y -= 0.12
    for piece in mrf.snippets(assignment, tokens, unary):
        colour = BOX_COLOURS[piece["region"] % len(BOX_COLOURS)]
        name = "whole image" if piece["region"] == 0 else f"box {piece['region']}"
        right.text(0.0, y, f"{name}: \"{piece['text']}\"  ({piece['score']:.2f})", color=colour,
                   fontsize=11, transform=right.transAxes, va="top")
        y -= 0.085
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def alignment_figure(image: np.ndarray, boxes: np.ndarray, tokens: Sequence[str], assignment: Sequence[int],
                     unary: np.ndarray, path: str, title: str = "") -> str:
    """Writes `alignment_png` (same arguments) to `path` (local or gs://); returns `path`."""
    return _write_bytes(path, alignment_png(image, boxes, tokens, assignment, unary, title))


def figure_grid(embedded: Mapping, beta: float, path: str, count: int = 4,
                sentences_per_image: int = SENTENCES_PER_IMAGE) -> str:
    """`alignment_png` for one sentence of each of the first `count` images, stacked in one PNG
    written to `path` (local or gs://)."""
    plt = _pyplot()
    parts = []
    for i in range(min(count, len(embedded["image_ids"]))):
        # The first sentence with two or more objects shows alignment best; fall back to sentence 0.
        choice = i * sentences_per_image
        for j in range(i * sentences_per_image, (i + 1) * sentences_per_image):
            if len(embedded["texts"][j].split()) >= 8:
                choice = j
                break
        tokens = embedded["texts"][choice].split()
        n = min(len(tokens), int(np.sum(embedded["word_ids"][choice] != 0)))
        keep = alignment_metrics.real_regions(embedded["boxes"][i])
        assignment, unary = alignment_metrics.align_sentence(
            embedded["regions"][i], embedded["words"][choice][:n], beta, keep)
        scores = np.zeros((n, len(embedded["boxes"][i])))
        scores[:, keep] = unary
        png = alignment_png(embedded["images"][i], embedded["boxes"][i], tokens[:n], assignment, scores,
                            f"image {embedded['image_ids'][i]}, beta = {beta:.3g}")
        parts.append(plt.imread(io.BytesIO(png), format="png"))
    width = max(p.shape[1] for p in parts)
    stacked = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=1.0)
                              for p in parts])
    buffer = io.BytesIO()
    plt.imsave(buffer, stacked, format="png")
    return _write_bytes(path, buffer.getvalue())


def evaluate_alignment(model, data_dir: str, scenes_path: str, max_regions: int, output: str,
                       val_images: int = 500) -> dict:
    """β on val, accuracy on test, region-snippet dataset and figure.

    Args:
        model: a trained `RegionRanker`.
        data_dir: records with region boxes (`beam_jobs.preprocess --format coco`).
        scenes_path: the shapes world's scenes.json (the true box of every object).
        max_regions: R, boxes per image including the whole image.
        output: where `alignments_test.json` and `alignment_test.png` go (local or gs://).
        val_images: val images that choose β.

    Returns:
        {"beta", "beta_grid_units", "val": [{"beta", "accuracy"}], "test", "test_beta_0",
         "test_one_region" (`alignment_metrics.alignment_accuracy` results), "figure"}.
    """
    scenes = alignment_metrics.load_scenes(scenes_path)
    val = embed_split(model, data_dir, "val", max_regions, limit=val_images)
    scale = unary_scale(val)
    betas = [b * scale for b in BETA_GRID]
    beta, val_results = alignment_metrics.choose_beta(val, scenes, betas)
    test = embed_split(model, data_dir, "test", max_regions)
    result = {
        "beta": beta, "beta_grid_units": scale,
        "val": [{"beta": r["beta"], "accuracy": r["accuracy"]} for r in val_results],
        "test": alignment_metrics.alignment_accuracy(test, scenes, beta),
        "test_beta_0": alignment_metrics.alignment_accuracy(test, scenes, 0.0),
        "test_one_region": alignment_metrics.alignment_accuracy(test, scenes, ONE_REGION_BETA),
    }
    size = next(iter(scenes.values()))["image_size"]
    tf.io.gfile.makedirs(output)
    with tf.io.gfile.GFile(os.path.join(output, "alignments_test.json"), "w") as f:
        json.dump(region_snippet_dataset(test, beta, (size, size)), f)
    result["figure"] = figure_grid(test, beta, os.path.join(output, "alignment_test.png"))
    return result


def format_alignment(result: Mapping) -> str:
    lines = [f"alignment accuracy (content words on their object's box), beta chosen on val = "
             f"{result['beta']:.3g}"]
    for key, name in (("test", "chosen beta"), ("test_beta_0", "beta = 0 (word-wise argmax)"),
                      ("test_one_region", "beta -> inf (one region)")):
        r = result[key]
        lines.append(f"  {name:<30} {100 * r['accuracy']:6.1f}%  of {r['words']} words in {r['sentences']} sentences")
    return "\n".join(lines)


def main(argv=None) -> int:
    """`python -m vcaption.evaluate --task alignment ...` (which handles `--verbose`)."""
    from vcaption import cli, registry

    parser = cli.make_parser("python -m vcaption.evaluate --task alignment", __doc__.split("\n")[0],
                             verbose=False)
    parser.add_argument("--model", required=True, help="a RegionRanker .keras file")
    parser.add_argument("--data", required=True, help="preprocess output with region boxes")
    parser.add_argument("--scenes", required=True, help="scenes.json of the shapes world")
    parser.add_argument("--max-regions", type=int, default=5, help="R, boxes per image with the whole image")
    parser.add_argument("--val-images", type=int, default=500, help="val images that choose beta")
    parser.add_argument("--output", help="where results go; None: the model's directory")
    args = parser.parse_args(argv)
    model = registry.load_model(args.model)
    output = args.output or os.path.dirname(args.model) or "."
    result = evaluate_alignment(model, args.data, args.scenes, args.max_regions, output, args.val_images)
    print(format_alignment(result))
    with tf.io.gfile.GFile(os.path.join(output, "alignment_metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0
