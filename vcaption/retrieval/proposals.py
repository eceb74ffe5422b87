"""Region proposals for images without boxes: selective search, as Karpathy & Fei-Fei use R-CNN
detections (§3.1.1: "the top 19 detected locations in addition to the whole image").

Selective search (Uijlings et al., IJCV 2013) lives in OpenCV's contrib module `ximgproc`, which
ships in `opencv-contrib-python(-headless)`. That package replaces the `opencv-python-headless`
vcaption installs (both provide `cv2`), so it is not a dependency: install it yourself to use
proposals; `selective_search_boxes` raises a clear error when `cv2.ximgproc` is missing.

Example:
    >>> boxes = selective_search_boxes(image_rgb_uint8, top_k=19)  # [20, 4], whole image first
"""

from __future__ import annotations

import numpy as np

MISSING_XIMGPROC = ("selective search needs cv2.ximgproc from the 'opencv-contrib-python-headless' "
                    "package, which replaces 'opencv-python-headless' (pip uninstall "
                    "opencv-python-headless && pip install opencv-contrib-python-headless)")


def _ximgproc():
    import cv2

    if not hasattr(cv2, "ximgproc"):
        raise ImportError(MISSING_XIMGPROC)
    return cv2.ximgproc


def selective_search_boxes(image: np.ndarray, top_k: int = 19, fast: bool = True,
                           min_side: float = 0.05) -> np.ndarray:
    """The whole image followed by the first `top_k` selective-search proposals.

    Args:
        image: uint8 [H, W, 3] RGB.
        top_k: proposals kept after the whole image (19 in the paper).
        fast: selective search's fast mode (else quality mode).
        min_side: drop proposals with a side under this fraction of the image.

    Returns:
        float32 [1 + k, 4] normalised (ymin, xmin, ymax, xmax), k <= top_k; row 0 = [0, 0, 1, 1].

    Raises:
        ImportError: naming the package to install, when `cv2.ximgproc` is absent.
        ValueError: when `image` is not [H, W, 3] uint8.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    ximgproc = _ximgproc()
    search = ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR
    search.switchToSelectiveSearchFast() if fast else search.switchToSelectiveSearchQuality()
    height, width = image.shape[:2]
    boxes = [(0.0, 0.0, 1.0, 1.0)]
    for x, y, w, h in search.process():
        if w < min_side * width or h < min_side * height:
            continue
        boxes.append((y / height, x / width, (y + h) / height, (x + w) / width))
        if len(boxes) == top_k + 1:
            break
    return np.asarray(boxes, np.float32)
