"""Scene-grounded caption metrics on hand-written captions and scenes (expected values by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from vcaption.datasets import shapes
from vcaption.metrics import grounding


def obj(shape, colour, size="large", row=0, col=0):
    return {"shape": shape, "colour": colour, "size": size, "row": row, "col": col}


# A red circle top left, a small blue square bottom right, a large green triangle centre.
SCENE = {"objects": [obj("circle", "red", "large", 0, 0), obj("square", "blue", "small", 2, 2),
                     obj("triangle", "green", "large", 1, 1)]}


def scores(caption, scene=SCENE, held_out=()):
    return grounding.grounding_scores({"1": caption}, {"1": scene}, held_out)


def test_parse_reads_synonyms_plurals_numbers_and_relations():
    parsed = grounding.parse_caption("Two shapes: a big red ball is to the left of three tiny boxes.")
    assert [(m.size, m.colour, m.shape, m.number) for m in parsed.mentions] == [
        ("large", "red", "circle", None), ("small", None, "square", 3)]
    assert [n for _, n in parsed.counts] == [2, 3]
    assert [(a.shape, r, b.shape) for a, r, b in parsed.relations] == [("circle", "left of", "square")]


def test_true_caption_is_right_everywhere():
    s = scores("three shapes: a large red circle above a small blue square and a green triangle")
    assert s["object_precision"] == 1.0 and s["chair_i"] == 0.0 and s["chair_s"] == 0.0
    assert s["object_recall"] == 1.0
    assert s["binding_accuracy"] == 1.0 and s["bindings"] == 3
    assert s["count_accuracy"] == 1.0 and s["count_claims"] == 1
    assert s["relation_accuracy"] == 1.0 and s["relation_claims"] == 1


def test_caption_naming_an_absent_object_hallucinates():
    s = scores("a red circle and a purple diamond")
    # named {circle, diamond}; the scene has circle, square, triangle
    assert s["object_precision"] == 0.5 and s["chair_i"] == 0.5 and s["chair_s"] == 1.0
    assert s["object_recall"] == pytest.approx(1 / 3)


def test_wrong_colour_shape_binding_with_every_word_in_the_scene():
    # red, blue, circle and square are all in the scene, but not as a blue circle / red square.
    s = scores("a blue circle and a red square")
    assert s["chair_s"] == 0.0 and s["object_precision"] == 1.0  # the objects exist...
    assert s["binding_accuracy"] == 0.0 and s["bindings"] == 2    # ...with other colours
    # a size that does not fit breaks the binding too
    assert scores("a small red circle")["binding_accuracy"] == 0.0
    assert scores("a big red ball")["binding_accuracy"] == 1.0


def test_counts():
    assert scores("three shapes")["count_accuracy"] == 1.0
    assert scores("two shapes: a red circle and a blue square")["count_accuracy"] == 0.0
    assert scores("the only shape is a red circle")["count_accuracy"] == 0.0  # there are three
    single = {"objects": [obj("circle", "red")]}
    assert scores("the only shape is a red circle", single)["count_accuracy"] == 1.0
    assert scores("a single red ball in the top left", single)["count_accuracy"] == 1.0
    two_red = {"objects": [obj("circle", "red", col=0), obj("circle", "red", col=2)]}
    assert scores("two red circles", two_red)["count_accuracy"] == 1.0
    assert scores("three red circles", two_red)["count_accuracy"] == 0.0
    # no claim: None, never a perfect score
    assert scores("a red circle")["count_accuracy"] is None


def test_relations_use_rows_and_columns():
    assert scores("a red circle is above a blue square")["relation_accuracy"] == 1.0
    assert scores("a blue square is below a red circle")["relation_accuracy"] == 1.0
    assert scores("a red circle is left of a green triangle")["relation_accuracy"] == 1.0
    assert scores("a red circle is to the right of a green triangle")["relation_accuracy"] == 0.0
    assert scores("a blue square above a red circle")["relation_accuracy"] == 0.0
    # the relation must hold between objects that fit both phrases
    assert scores("a red square is above a blue circle")["relation_accuracy"] == 0.0


def test_held_out_pair_recall():
    scene = {"objects": [obj("triangle", "red", row=0, col=0), obj("circle", "blue", row=0, col=2)]}
    held = [("red", "triangle"), ("blue", "circle"), ("green", "diamond")]
    assert scores("a red triangle and a blue ball", scene, held)["held_out_pair_recall"] == 1.0
    named_one = scores("a red triangle and a green circle", scene, held)
    assert named_one["held_out_pair_recall"] == 0.5 and named_one["held_out_pairs_present"] == 2
    # naming the pair's words apart does not count
    assert scores("a red circle and a blue triangle", scene, held)["held_out_pair_recall"] == 0.0
    assert "held_out_pair_recall" not in scores("a red triangle", scene)


def test_micro_average_over_captions():
    scenes = {"1": SCENE, "2": {"objects": [obj("diamond", "orange")]}}
    result = grounding.grounding_scores({"1": "a red circle", "2": "an orange square"}, scenes)
    # named: {circle} (present), {square} (absent) -> precision 1/2; captions hallucinating: 1/2
    assert result["object_precision"] == 0.5 and result["chair_s"] == 0.5
    assert result["object_recall"] == pytest.approx(1 / 4)  # 1 of 3 + 0 of 1 scene classes


def test_missing_scene_is_an_error():
    with pytest.raises(KeyError, match="no scene"):
        grounding.grounding_scores({"9": "a red circle"}, {"1": SCENE})


def test_generated_captions_are_all_correct():
    """The world's own captions are true: the metrics must read them back without error."""
    rng = np.random.default_rng(5)
    captions, scenes = {}, {}
    for index in range(300):
        scene = shapes.sample_scene(rng)
        objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "row": o.row, "col": o.col}
                   for o in scene.objects]
        for k, caption in enumerate(shapes.scene_captions(scene, rng)):
            captions[f"{index}#{k}"] = caption
            scenes[f"{index}#{k}"] = {"objects": objects}
    result = grounding.grounding_scores(captions, scenes)
    for key in ("object_precision", "binding_accuracy", "count_accuracy", "relation_accuracy"):
        assert result[key] == 1.0, key
    assert result["chair_s"] == 0.0
    assert result["count_claims"] > 100 and result["relation_claims"] > 50


def test_by_scene_size_groups_captions_by_object_count():
    one = {"objects": [obj("triangle", "red")]}
    scenes = {"1": SCENE, "2": one, "3": one}
    captions = {"1": "a red circle and a blue square", "2": "a red triangle", "3": "a blue triangle"}
    held = [("red", "triangle")]
    groups = grounding.grounding_by_scene_size(captions, scenes, held)
    assert list(groups) == ["1", "3"]  # smallest scenes first, keys as in JSON
    assert groups["1"] == grounding.grounding_scores({"2": captions["2"], "3": captions["3"]}, scenes, held)
    assert groups["1"]["held_out_pair_recall"] == 0.5 and groups["1"]["captions"] == 2
    assert groups["3"]["object_recall"] == pytest.approx(2 / 3)
    assert groups["3"]["held_out_pairs_present"] == 0
    with pytest.raises(KeyError, match="no scene"):
        grounding.grounding_by_scene_size({"9": "a red circle"}, scenes)


def test_scores_by_scene_size_average_per_image_cider_per_group():
    from vcaption.captioning import evaluation

    one = {"objects": [obj("triangle", "red")]}
    scenes = {"1": SCENE, "2": one, "3": one}
    system = {"candidates": {"1": "a red circle", "2": "a red triangle", "3": "a blue square"},
              "per_image": {"1": {"CIDEr": 3.0}, "2": {"CIDEr": 1.0}, "3": {"CIDEr": 2.0}}}
    groups = evaluation.scores_by_scene_size(system, scenes, [])
    assert groups["1"]["CIDEr"] == 1.5 and groups["3"]["CIDEr"] == 3.0
    # without per-image scores (a results file) the groups have grounding only
    assert "CIDEr" not in evaluation.scores_by_scene_size({"candidates": system["candidates"]}, scenes, [])["1"]
    table = evaluation.format_scene_size_table({"model": groups}, "by objects").splitlines()
    assert table[0] == "by objects" and table[3].split()[:5] == ["model,", "1", "obj", "2", "1.500"]
    assert table[4].split()[4:8] == ["3.000", "33.3", "0.0", "100.0"]  # CIDEr-D, obj R, CHAIR_s, binding (%)
