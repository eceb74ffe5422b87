"""Keras functional models of the four families, by class name (the `model` field of a preset)."""

from __future__ import annotations

import importlib

# Class name -> module; imported lazily so that `import vcaption.models` stays cheap.
MODELS = {
    "LRCNCaptioner": "vcaption.models.lrcn",
    "KarpathyMultimodalRNN": "vcaption.models.mrnn",
    "MaoMultimodalRNN": "vcaption.models.mrnn",
    "LRCNActivityRecognizer": "vcaption.models.lrcn",
    "VideoLRCNCaptioner": "vcaption.models.lrcn",
    "S2VTCaptioner": "vcaption.models.s2vt",
    "VQAModel": "vcaption.models.vqa",
    "RegionRanker": "vcaption.models.ranker",
    "ObjectClassifier": "vcaption.models.object_classifier",
}


def get_class(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return getattr(importlib.import_module(MODELS[name]), name)


def build(name: str, **kwargs):
    """Instantiates a model class by name with its constructor arguments (its config)."""
    return get_class(name)(**kwargs)
