"""Model classes and tasks by name: the `model` and `task` fields of a preset.

Families register here by module path, imported on first use, so that `import vcaption.registry`
stays cheap and the shared base never imports a family.
"""

from __future__ import annotations

import importlib

# Class name -> module.
MODELS = {
    "LRCNCaptioner": "vcaption.captioning.lrcn",
    "KarpathyMultimodalRNN": "vcaption.captioning.mrnn",
    "MaoMultimodalRNN": "vcaption.captioning.mrnn",
    "LRCNActivityRecognizer": "vcaption.video.lrcn",
    "VideoLRCNCaptioner": "vcaption.video.lrcn",
    "S2VTCaptioner": "vcaption.video.s2vt",
    "TuplePredictor": "vcaption.video.semantic_tuple",
    "SemanticTupleCaptioner": "vcaption.video.semantic_tuple",
    "VQAModel": "vcaption.vqa.model",
    "RegionRanker": "vcaption.retrieval.ranker",
    "VisualSemanticEmbedding": "vcaption.retrieval.vse",
    "ObjectClassifier": "vcaption.objects.model",
    "NOCCaptioner": "vcaption.noc.model",
}

# Task name (a preset's `task`) -> "module:Task subclass" (`vcaption.runtime.task.Task`).
TASKS = {
    "caption": "vcaption.captioning.task:CaptioningTask",
    "activity": "vcaption.video.activity:ActivityTask",
    "video_caption": "vcaption.video.description:VideoCaptionTask",
    "vqa": "vcaption.vqa.task:VQATask",
    "retrieval": "vcaption.retrieval.task:RankerTask",
    "region_caption": "vcaption.retrieval.region_captioning:RegionCaptioningTask",
    "vg_region_caption": "vcaption.retrieval.vg_region_captioning:VGRegionCaptioningTask",
    "objects": "vcaption.objects.task:ObjectsTask",
    "noc": "vcaption.noc.task:NOCTask",
}

# Tasks whose evaluation scores captions with pycocoevalcap, whose PTB tokenizer and METEOR run on
# Java: their commands check for Java before any work. Declared here rather than on the Task
# classes so that `python -m vcaption.train` checks before the seconds-long TensorFlow import.
TASKS_SCORING_CAPTIONS = frozenset({"caption", "video_caption", "region_caption", "vg_region_caption",
                                    "noc"})


def get_class(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return getattr(importlib.import_module(MODELS[name]), name)


def build(name: str, **kwargs):
    """Instantiates a model class by name with its constructor arguments (its config)."""
    return get_class(name)(**kwargs)


def register_all() -> None:
    """Imports every family's model module, registering its Keras classes (and layers) for loading."""
    for module in sorted(set(MODELS.values())):
        importlib.import_module(module)


def load_model(path: str, compile: bool = False):
    """A `.keras` file of any vcaption model, written by this version or an earlier one."""
    import keras

    register_all()
    return keras.saving.load_model(path, compile=compile)
