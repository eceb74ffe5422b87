"""The NOC F1 (DCC protocol) that metrics.json reports equals a recount from the files a run
writes: results_test.json (its captions) and the world's scenes.json (what each image holds)."""

from __future__ import annotations

import json
import re

import pytest

from vcaption.captioning import evaluation
from vcaption.noc import metrics
from vcaption.noc.task import load_contains

# Hand-written: image -> (shapes in it, the caption a model wrote).
CASES = {
    1: (["star", "circle"], "a large red star in the top left and a small blue circle"),  # star: hit
    2: (["star"], "a big green square at the bottom"),  # star: missed
    3: (["square"], "two stars: a red star and a blue star"),  # star: named, absent (plural)
    4: (["hexagon", "square"], "a hexagon and a square"),  # hexagon: hit
    5: (["hexagon"], "a small orange hexagon"),  # hexagon: hit
    6: (["circle"], "a starry circle"),  # "starry" is not "star"
    7: (["circle", "star"], "a red circle, a blue star"),  # star: hit
}
HELD_OUT = ["star", "hexagon"]


@pytest.fixture
def run_files(tmp_path):
    scenes = {"image_size": 64, "noc": {"shapes": [], "held_out": HELD_OUT},
              "images": [{"id": i, "split": "test", "objects": [{"shape": s} for s in shapes]}
                         for i, (shapes, _) in CASES.items()]}
    (tmp_path / "scenes.json").write_text(json.dumps(scenes))
    evaluation.write_results(str(tmp_path / "results_test.json"), {str(i): c for i, (_, c) in CASES.items()})
    return tmp_path


def _recount(results_path, scenes_path, word):
    """Independent of vcaption: plain JSON and a regex."""
    with open(results_path) as f:
        captions = {r["image_id"]: r["caption"] for r in json.load(f)}
    with open(scenes_path) as f:
        holds = {s["id"]: {o["shape"] for o in s["objects"]} for s in json.load(f)["images"]}
    named = {i for i, c in captions.items() if {word, word + "s", word + "es"} & set(re.findall(r"[a-z]+", c.lower()))}
    contain = {i for i in captions if word in holds[i]}
    p = len(named & contain) / len(named) if named else 0.0
    r = len(named & contain) / len(contain) if contain else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def test_reported_f1_equals_a_recount_from_results_and_scenes(run_files):
    contains, held_out = load_contains(str(run_files / "scenes.json"))
    assert held_out == HELD_OUT
    with open(run_files / "results_test.json") as f:
        candidates = {str(r["image_id"]): r["caption"] for r in json.load(f)}
    block = metrics.noc_block(candidates, contains, held_out)
    for word in HELD_OUT:
        assert block["f1"][word] == pytest.approx(_recount(run_files / "results_test.json",
                                                           run_files / "scenes.json", word), abs=1e-4)
    # By hand: star named in 1, 3, 7 and held by 1, 2, 7: P = R = 2/3; hexagon P = R = 1.
    assert block["per_word"]["star"]["precision"] == pytest.approx(2 / 3)
    assert block["per_word"]["star"]["recall"] == pytest.approx(2 / 3)
    assert block["f1"]["hexagon"] == 1.0
    assert block["mean_f1"] == pytest.approx((2 / 3 + 1) / 2, abs=1e-4)


def test_f1_is_zero_when_a_word_is_never_named():
    block = metrics.noc_block({"1": "a red circle"}, {"1": {"star"}}, ["star"])
    assert block["f1"] == {"star": 0.0} and block["per_word"]["star"]["recall"] == 0.0


def test_classifier_recall_thresholds_the_visual_scores_at_zero():
    contains = {"1": {"star", "circle"}, "2": {"star"}, "3": {"circle"}, "4": {"hexagon"}}
    scores = {"1": {"star": 2.0, "hexagon": -1.0}, "2": {"star": -0.5, "hexagon": 3.0},
              "3": {"star": 0.1, "hexagon": -2.0}, "4": {"star": -3.0, "hexagon": -0.2}}
    result = metrics.classifier_recall(scores, contains, ["star", "hexagon"])
    # star: said by 1 and 3, held by 1 and 2; hexagon: said by 2 only, held by 4 only.
    assert result["star"] == {"precision": 0.5, "recall": 0.5}
    assert result["hexagon"] == {"precision": 0.0, "recall": 0.0}


def test_said_instead_counts_the_class_words_of_the_captions_that_miss_the_object():
    candidates = {str(i): caption for i, (_, caption) in CASES.items()}
    contains = {str(i): set(shapes) for i, (shapes, _) in CASES.items()}
    classes = ["circle", "square", "star", "hexagon"]
    # Star images 1, 2 and 7: only 2 misses it, and calls it a square.
    assert metrics.said_instead(candidates, contains, "star", classes) == {"missed": 1, "square": 1}
    assert metrics.said_instead(candidates, contains, "hexagon", classes) == {"missed": 0}
