"""`score_captions` gives what pycocoevalcap's own COCOEvalCap gives, call after call: it tokenizes
both sides in one tokenizer run and keeps one METEOR process for the whole Python process."""

import json
import shutil

import pytest

from vcaption.metrics import caption as caption_metrics

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")

REFERENCES = {
    "1": ["A red circle in the top left.", "a big red ball at the top left", "there is a red circle"],
    "2": ["Two blue squares, side by side.", "a blue square left of a blue square", "two boxes"],
    "3": ["a small yellow triangle at the bottom", "a tiny yellow triangle", "yellow triangle below"],
}
SYSTEMS = [
    {"1": "a red circle in the top left", "2": "two blue squares", "3": "a yellow triangle"},
    {"1": "a green square", "2": "a blue square left of a blue square", "3": "a small yellow triangle"},
]


class NoSpice:
    """SPICE downloads Stanford CoreNLP on first use (offline here); it is not what is compared."""

    def compute_score(self, gts, res):
        return 0.0, [0.0] * len(res)

    def method(self):
        return "SPICE"


def official_scores(tmp_path, monkeypatch, references, candidates) -> dict:
    """COCOEvalCap on COCO-format files, as the COCO caption evaluation server runs it (a fresh
    tokenizer run per side and a fresh METEOR process per evaluation)."""
    from pycocoevalcap import eval as coco_eval
    from pycocotools.coco import COCO

    monkeypatch.setattr(coco_eval, "Spice", NoSpice)

    annotations = {"images": [{"id": int(k)} for k in references], "annotations": [
        {"image_id": int(k), "id": 10 * int(k) + j, "caption": c}
        for k, refs in references.items() for j, c in enumerate(refs)], "type": "captions",
        "info": {}, "licenses": []}
    (tmp_path / "gt.json").write_text(json.dumps(annotations))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": int(k), "caption": c}
                                                   for k, c in candidates.items()]))
    coco = COCO(str(tmp_path / "gt.json"))
    evaluator = coco_eval.COCOEvalCap(coco, coco.loadRes(str(tmp_path / "res.json")))
    evaluator.evaluate()
    return evaluator.eval


@pytest.mark.slow  # two METEOR JVM starts per system on the official side
def test_score_captions_matches_coco_eval_cap_on_successive_calls(tmp_path, monkeypatch, capsys):
    ours = [caption_metrics.score_captions(REFERENCES, c, spice=False) for c in SYSTEMS]
    assert ours[0]["CIDEr"] != ours[1]["CIDEr"]
    for candidates, scores in zip(SYSTEMS, ours):
        official = official_scores(tmp_path, monkeypatch, REFERENCES, candidates)
        for metric in caption_metrics.CAPTION_METRICS:
            assert scores[metric] == pytest.approx(official[metric], abs=1e-9), metric


def test_one_meteor_process_serves_every_call():
    caption_metrics.score_captions(REFERENCES, SYSTEMS[0], metrics=("METEOR",), spice=False)
    first = caption_metrics._meteor.meteor_p.pid
    caption_metrics.score_captions(REFERENCES, SYSTEMS[1], metrics=("METEOR",), spice=False)
    assert caption_metrics._meteor.meteor_p.pid == first
