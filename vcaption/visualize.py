"""Pictures people would rather look at than read: caption grids and training curves (PNG)."""

from __future__ import annotations

import csv
import textwrap
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vcaption import data, images, records# noqa: E402


def caption_grid(items: Sequence[tuple[np.ndarray, str, Sequence[str]]], path: str, columns: int = 4,
                 title: str = "") -> str:
    """Writes a grid of images, each with its generated caption (bold) and references below.

    Args:
        items: (uint8 image [H, W, 3], generated caption, reference captions) per cell.
        path: the PNG to write.
        columns: cells per row.
        title: figure title.
    """
    rows = max(1, -(-len(items) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 5.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (image, generated, references) in zip(axes.flat, items):
        axis.imshow(image, interpolation="nearest")
        refs = "\n".join(textwrap.shorten(r, 48) for r in references[:3])
        axis.set_title("\n".join(textwrap.wrap(generated, 34)), fontsize=10, fontweight="bold")
        axis.text(0.0, -0.04, refs, transform=axis.transAxes, fontsize=7.5, va="top", color="#444")
    if title:
        figure.suptitle(title, fontsize=13)
    # Room above each image for its caption and below it for the references (tight_layout does not
    # see text placed under the axes).
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.06, top=1 - 1.4 / (5.6 * rows),
                           hspace=0.55, wspace=0.08)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def caption_grid_from_records(data_dir: str, split: str, candidates: Mapping[str, str], path: str,
                              count: int = 12) -> str:
    """A caption grid of the first `count` images of a split with their generated captions."""
    items = []
    for serialized in data.read_records(data.split_pattern(data_dir, split), shuffle=False):
        parsed = records.parse_caption_example(serialized)
        image_id = parsed["image_id"].numpy().decode()
        if image_id not in candidates:
            continue
        image = images.decode_image(parsed["image_jpeg"]).numpy()
        refs = [c.decode() for c in parsed["captions"].numpy()]
        items.append((image, candidates[image_id], refs))
        if len(items) == count:
            break
    return caption_grid(items, path, title=f"{split}: generated (bold) and reference captions")


def training_curves(history_csv: str, path: str, title: str = "") -> str:
    """Plots every numeric column of a Keras CSVLogger file against the epoch column."""
    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{history_csv} holds no epochs yet")
    epochs = [int(r["epoch"]) + 1 for r in rows]
    series = {k: [float(r[k]) if r[k] not in ("", "nan") else np.nan for r in rows]
              for k in rows[0] if k != "epoch" and k != "learning_rate"}
    losses = {k: v for k, v in series.items() if "loss" in k}
    others = {k: v for k, v in series.items() if k not in losses}
    panels = [p for p in (losses, others) if p]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes.flat, panels):
        for name, values in panel.items():
            axis.plot(epochs, values, marker="o", markersize=3, label=name)
        axis.set_xlabel("checkpoint interval")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
