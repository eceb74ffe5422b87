"""Karpathy & Fei-Fei §4's Visual Genome region merge (IoU >= 0.7, mean box) on hand-written boxes."""

from __future__ import annotations

import numpy as np
import pytest

from vcaption.datasets import visual_genome
from vcaption.datasets.base import Region


def test_iou_of_hand_written_boxes():
    boxes = [(0, 0, 10, 10), (5, 0, 10, 10), (0, 0, 10, 20), (20, 20, 5, 5), (10, 0, 5, 10)]
    iou = visual_genome.box_iou(boxes, boxes)
    np.testing.assert_allclose(np.diag(iou), 1.0)
    np.testing.assert_allclose(iou, iou.T)
    assert iou[0, 1] == pytest.approx(50 / 150)  # half overlap
    assert iou[0, 2] == pytest.approx(100 / 200)  # one inside the other
    assert iou[0, 3] == 0.0  # apart
    assert iou[0, 4] == 0.0  # touching edges share no area


def test_boxes_at_iou_threshold_merge_into_their_mean_with_all_phrases():
    regions = [Region((10, 10, 10, 10), "red ball"),
               Region((40, 40, 20, 20), "blue square"),
               # IoU with the first: 100 / 130 = 0.77 -> the same region
               Region((10, 10, 13, 10), "a red circle"),
               # IoU with the second: 280 / 400 = 0.70 exactly -> merged (the paper's ">= 0.7")
               Region((40, 40, 14, 20), "the square is blue"),
               # IoU 0.5 with the first and 130 / 200 = 0.65 with the third -> a region of its own
               Region((10, 10, 20, 10), "red shape")]
    merged = visual_genome.merge_regions(regions, 0.7)
    assert merged == [((10.0, 10.0, 11.5, 10.0), ["red ball", "a red circle"]),
                      ((40.0, 40.0, 17.0, 20.0), ["blue square", "the square is blue"]),
                      ((10.0, 10.0, 20.0, 10.0), ["red shape"])]
    # At 0.6 the third box overlaps both others enough and takes them in, although the first
    # and the last overlap only at 0.5: a group is one box's neighbourhood.
    loose = visual_genome.merge_regions(regions, 0.6)
    assert loose[0] == ((10.0, 10.0, (10 + 13 + 20) / 3, 10.0), ["red ball", "a red circle", "red shape"])


def test_merge_is_greedy_from_the_most_overlapped_box_not_transitive():
    # A chain shifted by one pixel: neighbours overlap at 9/11 = 0.82, boxes two apart at 8/12 =
    # 0.67. The box with the most neighbours (the first on ties) takes them, whether or not they
    # overlap each other (DenseCap's merge_boxes); what is left starts the next group.
    chain = [(0, 0, 10, 10), (1, 0, 10, 10), (2, 0, 10, 10)]
    assert visual_genome.box_iou(chain, chain)[0, 2] < 0.7 <= visual_genome.box_iou(chain, chain)[0, 1]
    assert visual_genome.merge_groups(chain) == [[0, 1, 2]]
    longer = [(0, 0, 10, 10), (1, 0, 10, 10), (2, 0, 10, 10), (3, 0, 10, 10)]
    # Boxes 1 and 2 both have three neighbours (themselves included); 1 wins and 3 stays alone
    # although it overlaps 2 (a transitive closure would make one group of all four).
    assert visual_genome.merge_groups(longer) == [[0, 1, 2], [3]]


def test_every_box_in_exactly_one_group():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 50, (40, 2)), rng.uniform(5, 30, (40, 2))], axis=1)
    groups = visual_genome.merge_groups(boxes)
    assert sorted(i for g in groups for i in g) == list(range(40))
    iou = visual_genome.box_iou(boxes, boxes)
    for group in groups:  # every member overlaps the group's centre (some member) at >= 0.7
        assert any(all(iou[c, i] >= 0.7 for i in group) for c in group)
    assert visual_genome.merge_groups([]) == []
    # Identical boxes always merge; with threshold 1 only they do.
    assert visual_genome.merge_groups([(0, 0, 5, 5), (0, 0, 5, 5), (0, 0, 5, 6)], 1.0) == [[0, 1], [2]]
    with pytest.raises(ValueError, match="IoU threshold"):
        visual_genome.merge_groups(boxes, 0.0)
