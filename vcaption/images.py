"""Image decoding and resizing as TensorFlow ops.

The Beam preprocessing job, tf.data and the exported SavedModels all call `preprocess_image`, so
the pixels a model sees in serving are produced by exactly the code that produced them in training
(DESIGN rule 1).

Decompression bombs are refused from the header alone: the width and height are read from the
JPEG/PNG/GIF/BMP header with string ops and checked against a pixel limit before any pixel is
decoded, so a 30000x30000 claim costs a few bytes of work, not gigabytes of memory.
"""

from __future__ import annotations

import os

import tensorflow as tf

# PIL refuses images over ~89M pixels by default; 40M still admits 8K photographs (7680x4320 = 33M).
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_JPEG_QUALITY = 95

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG"
_GIF_MAGIC = b"GIF8"
_BMP_MAGIC = b"BM"


def _read_uint(data: tf.Tensor, offset: int, length: int, dtype: tf.DType, little_endian: bool):
    raw = tf.strings.substr(data, offset, length)
    return tf.cast(tf.io.decode_raw(raw, dtype, little_endian=little_endian)[0], tf.int64)


def _header_size(encoded: tf.Tensor) -> tf.Tensor:
    """int64[2] (height, width) read from the header; [-1, -1] if the format is not recognised."""
    length = tf.strings.length(encoded)
    magic = tf.strings.substr(encoded, 0, tf.minimum(length, 4))

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)

    def png():  # IHDR: width, height as big-endian uint32 at bytes 16..24
        return tf.stack([_read_uint(encoded, 20, 4, tf.int32, False),
                         _read_uint(encoded, 16, 4, tf.int32, False)])

    def gif():  # logical screen: width, height as little-endian uint16 at bytes 6..10
        return tf.stack([_read_uint(encoded, 8, 2, tf.uint16, True),
                         _read_uint(encoded, 6, 2, tf.uint16, True)])

    def bmp():  # BITMAPINFOHEADER: width, height as little-endian int32 at 18..26 (height < 0: top-down)
        return tf.abs(tf.stack([_read_uint(encoded, 22, 4, tf.int32, True),
                                _read_uint(encoded, 18, 4, tf.int32, True)]))

    def unknown():
        return tf.constant([-1, -1], tf.int64)

    is_jpeg = tf.strings.substr(magic, 0, tf.minimum(tf.strings.length(magic), 3)) == _JPEG_MAGIC
    return tf.case(
        [(is_jpeg & (length >= 4), jpeg),
         ((magic == _PNG_MAGIC) & (length >= 24), png),
         ((magic == _GIF_MAGIC) & (length >= 10), gif),
         ((tf.strings.substr(magic, 0, tf.minimum(tf.strings.length(magic), 2)) == _BMP_MAGIC)
          & (length >= 26), bmp)],
        default=unknown, exclusive=False)


def decode_image(encoded: tf.Tensor, max_pixels: int = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes (scalar string) -> uint8[height, width, 3] RGB.

    Grayscale, palette and CMYK images come out as RGB; alpha is dropped; an animated GIF gives its
    first frame. Raises InvalidArgumentError naming the problem: not an image, an image whose
    header claims more than `max_pixels` pixels, or corrupt data.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    size = _header_size(encoded)
    pixels = size[0] * size[1]
    checks = [
        tf.debugging.assert_non_negative(
            size[0], message="not a JPEG, PNG, GIF or BMP image (unrecognised header)"),
        tf.debugging.Assert(
            pixels <= max_pixels,
            ["image too large: its header claims height, width =", size,
             f"which is over the limit of {max_pixels} pixels"]),
        tf.debugging.assert_positive(pixels, message="image has zero width or height"),
    ]
    # In a graph the checks must gate the decoder: automatic control dependencies only make them
    # run before the function returns, so without this a bomb's pixels could be allocated first.
    # (In eager mode the checks have already raised, and return None.)
    with tf.control_dependencies([check for check in checks if check is not None]):
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8[h, w, 3] -> uint8[image_size, image_size, 3], warped (aspect not kept) as in the papers.

    An image already of that size comes back as it is: the resize would be the identity, yet it
    costs ~0.5 ms, which the training pipeline pays for every image of records stored at the
    model's size.
    """
    def resize():
        resized = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    shape = tf.shape(image)
    same_size = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    result = tf.cond(same_size, lambda: tf.identity(image), resize)
    result.set_shape([image_size, image_size, 3])
    return result


def preprocess_image(encoded: tf.Tensor, image_size: int,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """Encoded bytes -> uint8[image_size, image_size, 3]: the one image path of the package."""
    return resize_image(decode_image(encoded, max_pixels), image_size)


def preprocess_images(encoded: tf.Tensor, image_size: int,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> tf.Tensor:
    """string[N] encoded images -> uint8[N, image_size, image_size, 3], each by `preprocess_image`
    (in graph: what every export's image input and the video clip decoder run)."""
    return tf.map_fn(lambda one: preprocess_image(one, image_size, max_pixels), encoded,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))


def encode_jpeg(image: tf.Tensor, quality: int = DEFAULT_JPEG_QUALITY) -> tf.Tensor:
    """uint8[h, w, 3] -> JPEG bytes, as stored in TFRecords at the configured size."""
    return tf.io.encode_jpeg(image, quality=quality, chroma_downsampling=False)


def to_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [0, 1], the input range of the from-scratch encoders."""
    return tf.cast(image, tf.float32) / 255.0


def make_image_preprocessor(image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """A traced function bytes -> resized JPEG bytes for ingest; traced once, reused per element."""

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def preprocess_to_jpeg(encoded):
        image = preprocess_image(encoded, image_size, max_pixels)
        # The source size is kept so that region boxes given in source pixels can be normalized.
        return encode_jpeg(image), _header_size(encoded)

    return preprocess_to_jpeg


def read_video_frames(path: str, max_frames: int = 64, stride: int = 1) -> list:
    """Decodes a video file with OpenCV -> list of uint8[h, w, 3] RGB frames (every `stride`-th).

    Video containers are decoded at ingest only (Beam), never in the serving graph: exported video
    models take frames. Raises ValueError naming the file if it cannot be opened or has no frames.
    """
    import tempfile

    import cv2

    if "\0" in path:  # OpenCV, like every C API, would open the name only up to the NUL: another file
        raise ValueError(f"video {path!r}: a file name holding a NUL byte is refused")
    local_path, tmp = path, None
    if "://" in path:  # OpenCV reads local files only: stage remote videos in a temporary file
        tmp = tempfile.NamedTemporaryFile(suffix=os.path.splitext(path)[1])
        tmp.write(tf.io.gfile.GFile(path, "rb").read())
        tmp.flush()
        local_path = tmp.name
    try:
        capture = cv2.VideoCapture(local_path)
        if not capture.isOpened():
            raise ValueError(f"video {path!r}: cannot be opened (missing, empty or unknown format)")
        frames, index = [], 0
        while len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
        capture.release()
    finally:
        if tmp is not None:
            tmp.close()
    if not frames:
        raise ValueError(f"video {path!r}: no decodable frames")
    return frames


# Flow images (LRCN, Donahue et al. PAMI 2017 §4): "x and y components of the flow are centred
# around 128 and multiplied by a scalar so that flow values fall between 0 and 255; a third channel
# is the flow magnitude". The scale is the number of grey levels per pixel of displacement.
DEFAULT_FLOW_SCALE = 16.0


def optical_flow_images(frames, scale: float = DEFAULT_FLOW_SCALE, window: int | None = None) -> list:
    """Consecutive RGB frames -> one uint8[h, w, 3] flow image per frame (OpenCV Farneback, ingest only).

    Image t holds the flow from frame t to frame t + 1 (the last frame repeats the previous flow,
    so frames and flow images stay aligned one to one):
    channel 0 = clip(128 + scale * dx), channel 1 = clip(128 + scale * dy), channel 2 =
    clip(scale * sqrt(dx^2 + dy^2)), all in [0, 255] (LRCN §4).

    Args:
        frames: a sequence of uint8[h, w, 3] RGB frames of one size (at least 2).
        scale: grey levels per pixel of displacement; +-128/scale pixels saturate.
        window: Farneback averaging window; default ~ a quarter of the frame side (odd, >= 5),
            which suits both 32-pixel test frames and 256-pixel ones.

    Returns:
        A list of `len(frames)` uint8[h, w, 3] arrays.

    Example:
        >>> flow = optical_flow_images(read_video_frames("video0.avi", 16))  # 16 flow images
    """
    import cv2
    import numpy as np

    if len(frames) < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got {len(frames)}")
    height, width = frames[0].shape[:2]
    window = window or max(5, (min(height, width) // 4) | 1)
    grey = [cv2.cvtColor(np.asarray(f, np.uint8), cv2.COLOR_RGB2GRAY) for f in frames]
    out = []
    for previous, current in zip(grey[:-1], grey[1:]):
        # pyr_scale 0.5, 3 levels, `window`, 3 iterations, poly_n 5, poly_sigma 1.1: OpenCV's example.
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, window, 3, 5, 1.1, 0)
        dx, dy = flow[..., 0], flow[..., 1]  # [h, w] pixels of displacement
        channels = [128.0 + scale * dx, 128.0 + scale * dy, scale * np.sqrt(dx * dx + dy * dy)]
        out.append(np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8))
    out.append(out[-1])
    return out
