"""Selective-search proposals: a clear error without cv2.ximgproc, whole image first with it."""

from __future__ import annotations

import numpy as np
import pytest

from vcaption.retrieval import proposals


def test_proposals_or_a_clear_error():
    import cv2

    image = np.zeros((64, 64, 3), np.uint8)
    image[8:30, 10:40] = (200, 40, 40)
    if not hasattr(cv2, "ximgproc"):
        with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
            proposals.selective_search_boxes(image)
        return
    boxes = proposals.selective_search_boxes(image, top_k=5)
    np.testing.assert_array_equal(boxes[0], [0, 0, 1, 1])
    assert 1 < len(boxes) <= 6 and np.all((boxes >= 0) & (boxes <= 1))


def test_bad_image_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        proposals.selective_search_boxes(np.zeros((4, 4), np.float32))
