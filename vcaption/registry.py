"""Keras functional models of the four families, by class name (the `model` field of a preset)."""

from __future__ import annotations

import importlib

# Class name -> module; imported lazily so that `import vcaption.registry` stays cheap.
MODELS = {
    "LRCNCaptioner": "vcaption.captioning.lrcn",
    "KarpathyMultimodalRNN": "vcaption.captioning.mrnn",
    "MaoMultimodalRNN": "vcaption.captioning.mrnn",
    "LRCNActivityRecognizer": "vcaption.video.lrcn",
    "VideoLRCNCaptioner": "vcaption.video.lrcn",
    "S2VTCaptioner": "vcaption.video.s2vt",
    "VQAModel": "vcaption.vqa.model",
    "RegionRanker": "vcaption.retrieval.ranker",
    "ObjectClassifier": "vcaption.objects.model",
}


def get_class(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return getattr(importlib.import_module(MODELS[name]), name)


def build(name: str, **kwargs):
    """Instantiates a model class by name with its constructor arguments (its config)."""
    return get_class(name)(**kwargs)
