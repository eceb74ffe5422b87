"""vcaption.images: formats, decompression bombs refused from the header, resizing."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vcaption import images


def _encode(mode: str, fmt: str, size=(30, 40)) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"),
                                      ("L", "PNG"), ("P", "GIF"), ("RGB", "BMP")])
def test_every_format_and_colour_model_decodes_to_rgb(mode, fmt):
    encoded = _encode(mode, fmt)
    image = images.decode_image(encoded)
    assert image.shape == (30, 40, 3) and image.dtype == tf.uint8
    np.testing.assert_array_equal(images._header_size(tf.constant(encoded)), [30, 40])


def _png_claiming(height: int, width: int) -> bytes:
    png = _encode("RGB", "PNG")
    return png[:16] + struct.pack(">II", width, height) + png[24:]  # IHDR: width, height


@pytest.mark.parametrize("traced", [False, True])
def test_bombs_non_images_and_empty_strings_are_refused_with_a_clear_message(traced):
    decode = tf.function(images.decode_image) if traced else images.decode_image
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image too large(.|\n)*30000\D+30000"):
        decode(tf.constant(_png_claiming(30000, 30000)))
    for not_an_image in (b"hello, world", b""):
        with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG, PNG, GIF or BMP image"):
            decode(tf.constant(not_an_image))
    assert decode(tf.constant(_png_claiming(30, 40))).shape[-1] == 3  # the limit is not too strict


def test_in_a_graph_the_decoder_waits_for_the_header_checks():
    """Automatic control dependencies alone order the checks before the function's outputs, not
    before the decoder; without explicit gating a bomb could be decoded (allocated) first."""
    graph = tf.function(images.decode_image).get_concrete_function(tf.TensorSpec([], tf.string)).graph
    decoders = [op for op in graph.get_operations() if op.type == "DecodeImage"]
    assert len(decoders) == 1
    assert len(decoders[0].control_inputs) >= 3  # non-image, pixel limit, zero size


def test_preprocess_resizes_to_a_square_and_keeps_uint8():
    image = images.preprocess_image(_encode("RGB", "JPEG"), 16)
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
    # A no-op resize leaves pixels as they are, so stored records decode to what was stored.
    same = images.resize_image(image, 16)
    np.testing.assert_array_equal(same, image)
