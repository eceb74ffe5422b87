"""The DCC/NOC novel-object protocol (Hendricks et al. CVPR 2016 §4; Venugopalan et al. CVPR 2017
§4.2): does a caption name a held-out object exactly when the image holds one?

For each held-out word w, over the test images: precision = captions naming w whose image
contains w's class / captions naming w; recall = images containing the class whose caption names
w / images containing it; F1 their harmonic mean (0 when either is 0). "Names" is a whole-word
match in the normalised caption (`vcaption.text.normalize`), plural included ("two stars").
"""

from __future__ import annotations

from typing import Mapping, Sequence

from vcaption import text


def names_word(caption: str, word: str) -> bool:
    """Whether the normalised caption has `word` (or its plural) as a token."""
    tokens = set(text.normalized_caption(caption).split())
    return word in tokens or (word + "s") in tokens or (word + "es") in tokens


def _precision_recall(predicted: set, holding: set) -> tuple[int, float, float]:
    """(|predicted & holding|, precision, recall) of a predicted set of image ids against the
    images that hold the class; 0.0 where a denominator is empty."""
    both = len(predicted & holding)
    return both, (both / len(predicted) if predicted else 0.0), (both / len(holding) if holding else 0.0)


def mention_f1(candidates: Mapping[str, str], contains: Mapping[str, set], words: Sequence[str]) -> dict:
    """{word: {"precision", "recall", "f1", "named", "contain", "both"}} over the images of
    `candidates` (image id -> caption); `contains`: image id -> the classes in it."""
    result = {}
    for word in words:
        named = {i for i, caption in candidates.items() if names_word(caption, word)}
        holding = {i for i in candidates if word in contains.get(i, ())}
        both, precision, recall = _precision_recall(named, holding)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result[word] = {"precision": precision, "recall": recall, "f1": f1,
                        "named": len(named), "contain": len(holding), "both": both}
    return result


def noc_block(candidates: Mapping[str, str], contains: Mapping[str, set], words: Sequence[str]) -> dict:
    """The `noc` block of metrics.json for one system: {"held_out", "f1": {word: F1}, "mean_f1",
    "per_word": mention_f1}."""
    per_word = mention_f1(candidates, contains, words)
    f1 = {w: round(v["f1"], 4) for w, v in per_word.items()}
    return {"held_out": list(words), "f1": f1,
            "mean_f1": round(sum(v["f1"] for v in per_word.values()) / max(len(words), 1), 4),
            "per_word": per_word}


def classifier_recall(scores: Mapping[str, Mapping[str, float]], contains: Mapping[str, set],
                      classes: Sequence[str]) -> dict:
    """The visual network alone as a multi-label classifier: {class: {"precision", "recall"}} of
    "score > 0" (sigmoid > 0.5) over the images of `scores` (image id -> {class: visual score}).

    It separates the two ways a held-out word goes unsaid: the visual network does not see the
    object (low recall here), or sees it and the caption model still prefers another word.
    """
    result = {}
    for name in classes:
        predicted = {i for i, s in scores.items() if s[name] > 0}
        holding = {i for i in scores if name in contains.get(i, ())}
        _, precision, recall = _precision_recall(predicted, holding)
        result[name] = {"precision": round(precision, 4), "recall": round(recall, 4)}
    return result


def said_instead(candidates: Mapping[str, str], contains: Mapping[str, set], word: str,
                 classes: Sequence[str]) -> dict:
    """{class word: captions naming it} over the images that hold `word`'s class but whose caption
    does not name `word`: what the captioner calls the object it misses (e.g. "circle")."""
    missed = [c for i, c in candidates.items() if word in contains.get(i, ()) and not names_word(c, word)]
    counts = {name: sum(names_word(c, name) for c in missed) for name in classes if name != word}
    return {"missed": len(missed), **{k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}}
