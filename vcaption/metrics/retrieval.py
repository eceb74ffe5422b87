"""Image-sentence retrieval metrics: R@K and median rank for image annotation and image search.

The layout is the one of Karpathy & Fei-Fei (Table 1) and of every later paper: a score matrix
`S[images, sentences]` with `sentences_per_image` (5) consecutive sentences per image (sentence j
belongs to image j // 5), and

- **image annotation** (image -> sentences): for each image, the rank of the best-ranked of its
  own sentences among all sentences;
- **image search** (sentence -> image): for each sentence, the rank of its image among all images;

reported as R@1, R@5, R@10 (fraction of queries whose rank is <= K) and the median rank.

**Ties** are counted against the model (pessimistic ranks): a wrong candidate whose score *equals*
the correct one's is ranked above it. So

    annotation rank of image i = 1 + #{wrong sentences j' : S[i, j'] >= max_{j own} S[i, j]}
    search rank of sentence j  = 1 + #{images i' != image(j) : S[i', j] >= S[image(j), j]}

A constant scorer therefore gets the worst rank, never R@1 = 1, and a model is credited only for
the distinctions it makes. Ties between an image's *own* sentences do not matter (only the best
counts). The median rank is `floor(median(ranks))` over 1-based ranks, which equals the
`floor(median(0-based)) + 1` of the public VSE/VSE++ evaluation code.

**Protocols** (COCO, Karpathy split):
- "1K": the test images in consecutive folds of 1,000 (with their 5,000 sentences), metrics
  averaged over the folds; the literature uses 5 folds of the 5,000 test images. With fewer
  than 1,000 images there is one fold of all of them (the result records `images` and `folds`).
- "5K": the first 5,000 images against their 25,000 sentences; only when there are >= 5,000.

`duplicate_upper_bound` gives the best ranks *any* scorer can reach when some sentences have the
same text: a scorer sees the text, so identical sentences of different images get identical
scores and, under the tie rule above, cannot all be ranked first.

Example:
    >>> scores = np.random.default_rng(0).normal(size=(1000, 5000))
    >>> table = retrieval_table(scores)
    >>> table["1K"]["annotation"]["R@1"], table["1K"]["search"]["median_rank"]
"""

from __future__ import annotations

import collections
from typing import Mapping, Sequence

import numpy as np

RECALL_AT = (1, 5, 10)
FOLD_SIZE = 1000
FIVE_K = 5000
SENTENCES_PER_IMAGE = 5


def check_scores(scores, sentences_per_image: int = SENTENCES_PER_IMAGE, name: str = "scores") -> np.ndarray:
    """`scores` as float64 [images, images * sentences_per_image]; a clear error otherwise."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d [images, sentences] matrix, got shape {scores.shape}")
    images, sentences = scores.shape
    if images == 0 or sentences != images * sentences_per_image:
        raise ValueError(f"{name}: {images} images need {images * sentences_per_image} sentence columns "
                         f"({sentences_per_image} per image, sentence j of image j // "
                         f"{sentences_per_image}), got {sentences}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name}: {int(np.sum(~np.isfinite(scores)))} entries are NaN or infinite")
    return scores


def annotation_ranks(scores, sentences_per_image: int = SENTENCES_PER_IMAGE) -> np.ndarray:
    """1-based rank of each image's best-ranked own sentence (ties pessimistic). int64 [images]."""
    scores = check_scores(scores, sentences_per_image)
    images = scores.shape[0]
    owner = np.arange(scores.shape[1]) // sentences_per_image  # [sentences]
    own = owner[np.newaxis, :] == np.arange(images)[:, np.newaxis]  # [images, sentences]
    best_own = np.max(np.where(own, scores, -np.inf), axis=1)  # [images]
    wrong_at_least = (scores >= best_own[:, np.newaxis]) & ~own  # [images, sentences]
    return 1 + np.sum(wrong_at_least, axis=1).astype(np.int64)


def search_ranks(scores, sentences_per_image: int = SENTENCES_PER_IMAGE) -> np.ndarray:
    """1-based rank of each sentence's image among all images (ties pessimistic). int64 [sentences]."""
    scores = check_scores(scores, sentences_per_image)
    owner = np.arange(scores.shape[1]) // sentences_per_image  # [sentences]
    correct = scores[owner, np.arange(scores.shape[1])]  # [sentences]
    at_least = scores >= correct[np.newaxis, :]  # [images, sentences]; includes the correct image
    return np.sum(at_least, axis=0).astype(np.int64)  # the correct image itself supplies the "1 +"


def rank_metrics(ranks: Sequence[int]) -> dict:
    """{"R@1", "R@5", "R@10": fraction of ranks <= K, "median_rank": floor(median), "mean_rank"}."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("rank_metrics: no ranks")
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in RECALL_AT}
    out["median_rank"] = float(np.floor(np.median(ranks)))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def _mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _fold_slices(images: int, protocol: str) -> list[slice]:
    if protocol == "1K":
        folds = max(1, images // FOLD_SIZE)
        size = min(images, FOLD_SIZE)
        return [slice(f * size, (f + 1) * size) for f in range(folds)]
    if protocol == "5K":
        if images < FIVE_K:
            raise ValueError(f"the 5K protocol needs >= {FIVE_K} images, got {images}")
        return [slice(0, FIVE_K)]
    raise ValueError(f"protocol must be '1K' or '5K', got {protocol!r}")


def _evaluate_folds(images: int, protocol: str, sentences_per_image: int, fold_ranks) -> dict:
    """Metrics averaged over the protocol's folds; `fold_ranks(rows, cols)` -> (annotation, search)."""
    slices = _fold_slices(images, protocol)
    annotation, search = [], []
    for rows in slices:
        cols = slice(rows.start * sentences_per_image, rows.stop * sentences_per_image)
        a, s = fold_ranks(rows, cols)
        annotation.append(rank_metrics(a))
        search.append(rank_metrics(s))
    return {"annotation": _mean_metrics(annotation), "search": _mean_metrics(search),
            "images": slices[0].stop - slices[0].start, "folds": len(slices)}


def evaluate_retrieval(scores, protocol: str = "1K",
                       sentences_per_image: int = SENTENCES_PER_IMAGE) -> dict:
    """Annotation and search metrics of a score matrix under one protocol.

    Args:
        scores: [images, images * sentences_per_image]; higher = better match.
        protocol: "1K" (mean over folds of 1,000 images) or "5K" (first 5,000 images).
        sentences_per_image: consecutive sentences per image (5 for Flickr and COCO).

    Returns:
        {"annotation": {R@1, R@5, R@10, median_rank, mean_rank}, "search": {...},
         "images": images per fold, "folds": number of folds}.
    """
    scores = check_scores(scores, sentences_per_image)

    def fold_ranks(rows, cols):
        block = scores[rows, cols]
        return annotation_ranks(block, sentences_per_image), search_ranks(block, sentences_per_image)

    return _evaluate_folds(scores.shape[0], protocol, sentences_per_image, fold_ranks)


def available_protocols(images: int) -> list[str]:
    return ["1K", "5K"] if images >= FIVE_K else ["1K"]


def retrieval_table(scores, sentences_per_image: int = SENTENCES_PER_IMAGE) -> dict:
    """{protocol: evaluate_retrieval(...)} for every protocol the number of images allows."""
    scores = check_scores(scores, sentences_per_image)
    return {p: evaluate_retrieval(scores, p, sentences_per_image)
            for p in available_protocols(scores.shape[0])}


# ---------------------------------------------------------------------------------------------
# The upper bound that duplicate sentences allow
# ---------------------------------------------------------------------------------------------
def _check_texts(texts: Sequence[str], sentences_per_image: int) -> list[str]:
    texts = list(texts)
    if not texts or len(texts) % sentences_per_image:
        raise ValueError(f"texts: {len(texts)} sentences is not a positive multiple of "
                         f"{sentences_per_image} per image")
    return texts


def best_annotation_ranks(texts: Sequence[str], sentences_per_image: int = SENTENCES_PER_IMAGE) -> np.ndarray:
    """The best annotation rank any text-based scorer can give each image.

    A scorer gives identical texts identical scores for a given image, so image i can put one of
    its own texts t first, tied with every sentence of *other* images that reads t; under the
    pessimistic tie rule its best rank is 1 + min over its texts t of that count.
    """
    texts = _check_texts(texts, sentences_per_image)
    images = len(texts) // sentences_per_image
    per_text = collections.defaultdict(collections.Counter)  # text -> image -> sentences
    for j, t in enumerate(texts):
        per_text[t][j // sentences_per_image] += 1
    ranks = np.empty(images, np.int64)
    for i in range(images):
        own = set(texts[i * sentences_per_image:(i + 1) * sentences_per_image])
        ranks[i] = 1 + min(sum(per_text[t].values()) - per_text[t][i] for t in own)
    return ranks


def best_search_ranks(texts: Sequence[str], sentences_per_image: int = SENTENCES_PER_IMAGE) -> np.ndarray:
    """The best search ranks any text-based scorer can give the sentences, jointly.

    All sentences that read t share one ranking of the images; ordering the images by how many
    sentences reading t they own maximises R@K for every K at once. Ties among images are not
    forced (images differ), so ranks within the ordering are distinct.
    """
    texts = _check_texts(texts, sentences_per_image)
    per_text = collections.defaultdict(collections.Counter)
    for j, t in enumerate(texts):
        per_text[t][j // sentences_per_image] += 1
    ranks = np.empty(len(texts), np.int64)
    rank_of = {t: {image: r + 1 for r, (image, _) in enumerate(counts.most_common())}
               for t, counts in per_text.items()}
    for j, t in enumerate(texts):
        ranks[j] = rank_of[t][j // sentences_per_image]
    return ranks


def duplicate_upper_bound(texts: Sequence[str], protocol: str = "1K",
                          sentences_per_image: int = SENTENCES_PER_IMAGE) -> dict:
    """The metrics of the best possible scorer given duplicate texts, per `evaluate_retrieval`'s
    protocol and folds. `texts` are the (normalized) sentences in score-matrix column order."""
    texts = _check_texts(texts, sentences_per_image)

    def fold_ranks(rows, cols):
        fold = texts[cols]
        return best_annotation_ranks(fold, sentences_per_image), best_search_ranks(fold, sentences_per_image)

    return _evaluate_folds(len(texts) // sentences_per_image, protocol, sentences_per_image, fold_ranks)


def format_retrieval_table(rows: Mapping[str, Mapping], title: str = "") -> str:
    """The paper's layout (Karpathy & Fei-Fei Table 1): R@K in percent, median rank.

    Args:
        rows: system name -> an `evaluate_retrieval` result.
        title: a line above the table.
    """
    head = f"{'':<28}{'Image Annotation':^32}  {'Image Search':^32}"
    cols = "".join(f"{c:>8}" for c in ("R@1", "R@5", "R@10", "Med r"))
    header = f"{'Model':<28}{cols}  {cols}"
    lines = ([title] if title else []) + [head, header, "-" * len(header)]
    for name, result in rows.items():
        cells = []
        for side in ("annotation", "search"):
            m = result[side]
            cells.append("".join(f"{100 * m[f'R@{k}']:>8.1f}" for k in RECALL_AT)
                         + f"{m['median_rank']:>8.0f}")
        lines.append(f"{name:<28}{cells[0]}  {cells[1]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """`python -m vcaption.evaluate --task retrieval --scores S.npy [--sentences-per-image 5]
    [--texts T.json] [--output metrics.json]`: prints the table for every available protocol."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m vcaption.evaluate --task retrieval",
        description="R@1/5/10 and median rank from a saved score matrix (rows = images, columns = "
                    "sentences, sentence j belongs to image j // sentences-per-image)")
    parser.add_argument("--scores", required=True, help="a .npy score matrix [images, sentences]")
    parser.add_argument("--sentences-per-image", type=int, default=SENTENCES_PER_IMAGE)
    parser.add_argument("--texts", help="optional JSON list of the sentences in column order: adds the "
                                        "upper bound that duplicate sentences allow")
    parser.add_argument("--output", help="also write the metrics as JSON here")
    args = parser.parse_args(argv)
    try:
        scores = check_scores(np.load(args.scores), args.sentences_per_image, name=args.scores)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    result = {}
    for protocol in available_protocols(scores.shape[0]):
        rows = {"model": evaluate_retrieval(scores, protocol, args.sentences_per_image)}
        if args.texts:
            with open(args.texts, encoding="utf-8") as f:
                texts = json.load(f)
            if len(texts) != scores.shape[1]:
                parser.error(f"--texts {args.texts}: {len(texts)} sentences for {scores.shape[1]} columns")
            rows["upper bound (duplicates)"] = duplicate_upper_bound(texts, protocol, args.sentences_per_image)
        fold = rows["model"]
        print(format_retrieval_table(rows, f"{protocol} protocol: {fold['folds']} fold(s) of "
                                           f"{fold['images']} images ({args.scores})"))
        result[protocol] = rows
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
    return 0
