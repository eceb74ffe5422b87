"""Alignment accuracy on the built-in shapes world, where the true box of every object phrase is known.

A caption of the shapes world names objects as "[size] colour shape" ("a big red ball in the top
left"); `scenes.json` (written by `vcaption.datasets.shapes.generate`) gives every object's
shape, colour, size and pixel box. A *content word* is a size, colour or shape word of an object
phrase that picks out exactly one object of its image (phrases that fit two identical objects are
left out: no box is "the" right one). Alignment accuracy = the fraction of content words whose
aligned region (Viterbi, Eqs. 10-12) is that object's box.

Example:
    >>> scenes = load_scenes("/tmp/shapes/scenes.json")
    >>> result = alignment_accuracy(embedded, scenes, beta=1.0)
    >>> result["accuracy"], result["words"]
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from vcaption.datasets import shapes
from vcaption.metrics import grounding
from vcaption.retrieval import mrf

# Word -> attribute value, for every word the caption templates use (synonyms included).
_SIZE_WORDS = grounding.SIZE_WORDS
_SHAPE_WORDS = grounding.SHAPE_WORDS
MATCH_IOU = 0.5


def load_scenes(path: str) -> dict[str, dict]:
    """scenes.json (local or gs://) -> {image id (string, as in the records): scene} with its image size."""
    return grounding.load_scenes(path)[0]


def object_mentions(tokens: Sequence[str], objects: Sequence[Mapping]) -> list[tuple[list[int], int]]:
    """[(token positions of the phrase, object index)] for every phrase naming exactly one object."""
    mentions = []
    for p, token in enumerate(tokens):
        if token not in shapes.COLOURS or p + 1 >= len(tokens) or tokens[p + 1] not in _SHAPE_WORDS:
            continue
        positions = [p, p + 1]
        wanted = {"colour": token, "shape": _SHAPE_WORDS[tokens[p + 1]]}
        if p > 0 and tokens[p - 1] in _SIZE_WORDS:
            positions.insert(0, p - 1)
            wanted["size"] = _SIZE_WORDS[tokens[p - 1]]
        matches = [k for k, o in enumerate(objects) if all(o[a] == v for a, v in wanted.items())]
        if len(matches) == 1:
            mentions.append((positions, matches[0]))
    return mentions


def _iou(a, b) -> float:
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def object_regions(objects: Sequence[Mapping], boxes: np.ndarray, image_size: int) -> dict[int, int]:
    """Object index -> index of the region whose box overlaps its true box best (IoU >= 0.5)."""
    out = {}
    for k, obj in enumerate(objects):
        x, y, w, h = obj["box"]
        truth = (y / image_size, x / image_size, (y + h) / image_size, (x + w) / image_size)
        ious = [_iou(truth, box) if r > 0 else 0.0 for r, box in enumerate(boxes)]  # 0 = whole image
        if ious and max(ious) >= MATCH_IOU:
            out[k] = int(np.argmax(ious))
    return out


def real_regions(boxes: np.ndarray) -> np.ndarray:
    """Indices of the regions that are not whole-image padding (region 0 is always kept)."""
    whole = np.array([0.0, 0.0, 1.0, 1.0])
    return np.array([0] + [r for r in range(1, len(boxes)) if not np.allclose(boxes[r], whole)])


def align_sentence(regions: np.ndarray, words: np.ndarray, beta: float, keep: np.ndarray):
    """(assignment into the full region list, unary [N, len(keep)]) for one sentence."""
    unary = words @ regions[keep].T  # [N words, M regions]: v_tᵀ s_j (Eq. 11)
    assignment, _ = mrf.viterbi(unary, beta)
    return keep[assignment], unary


def alignment_accuracy(embedded: Mapping, scenes: Mapping[str, Mapping], beta: float,
                       sentences_per_image: int = 5) -> dict:
    """Fraction of content words aligned to their object's box, over an `embed_split` result.

    Returns:
        {"accuracy", "words" (content words scored), "sentences", "unmatched_objects" (objects
        with no region box), "length_mismatches" (sentences whose tokens and ids differ), "beta"}.
    """
    correct = total = sentences = unmatched = mismatches = 0
    for i, image_id in enumerate(embedded["image_ids"]):
        scene = scenes.get(str(image_id))
        if scene is None:
            raise KeyError(f"image {image_id} is not in scenes.json: wrong --scenes for this data?")
        boxes = embedded["boxes"][i]
        to_region = object_regions(scene["objects"], boxes, scene["image_size"])
        unmatched += len(scene["objects"]) - len(to_region)
        keep = real_regions(boxes)
        for j in range(i * sentences_per_image, (i + 1) * sentences_per_image):
            tokens = embedded["texts"][j].split()
            length = int(np.sum(embedded["word_ids"][j] != 0))
            if length != len(tokens):
                mismatches += 1
                continue
            mentions = [(p, to_region[k]) for p, k in object_mentions(tokens, scene["objects"])
                        if k in to_region]
            if not mentions:
                continue
            assignment, _ = align_sentence(embedded["regions"][i], embedded["words"][j][:length], beta, keep)
            sentences += 1
            for positions, region in mentions:
                total += len(positions)
                correct += int(np.sum(assignment[positions] == region))
    return {"accuracy": correct / total if total else float("nan"), "words": total,
            "sentences": sentences, "unmatched_objects": unmatched,
            "length_mismatches": mismatches, "beta": float(beta)}


def choose_beta(embedded_val: Mapping, scenes: Mapping, betas: Sequence[float]) -> tuple[float, list[dict]]:
    """The β of `betas` with the best validation accuracy (the smallest on ties), and every result."""
    results = [alignment_accuracy(embedded_val, scenes, b) for b in betas]
    best = max(results, key=lambda r: (r["accuracy"], -r["beta"]))
    return best["beta"], results
