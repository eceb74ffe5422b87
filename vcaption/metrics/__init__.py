"""Metrics: captions (pycocoevalcap), retrieval, VQA, classification."""
