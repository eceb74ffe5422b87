"""Hermetic SavedModels of the video models: activity (frames -> label + probabilities) and
description (frames -> N-best captions).

Both take a video as its encoded frames, `string [batch, frames]` (JPEG/PNG bytes, any size), and
decode and resize them in the graph with `vcaption.images.preprocess_image`, the function that made
the training frames (DESIGN rule 1). Optical flow needs OpenCV, which has no TF op: the activity
export's `fusion` signature takes the flow images as a second input (make them with
`vcaption.images.optical_flow_images`, as the Beam job did). As in `vcaption.export`, the modules
track only variables (and the vocabulary table), so the SavedModels load with TensorFlow alone, and
`export_core.save_versioned` writes them atomically under `<root>/<name>/<version>/` with a warmup request.

Example (a fresh process, TensorFlow only):
```python
model = tf.saved_model.load("saved_models/lrcn_activity/1")
out = model.signatures["serving_default"](frames=tf.constant([jpegs]))  # jpegs: 24 frames
out["label"], out["probabilities"]  # string [1], float32 [1, classes]
```
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from vcaption import data, decoding, images, text
from vcaption.captioning.export import check_decoder
from vcaption.runtime import export_core
from vcaption.config import DecodeConfig
from vcaption.video.lrcn import clip_average_probabilities

_FRAMES = tf.TensorSpec([None, None], tf.string, name="frames")


def _decode_videos(frames_bytes, image_size: int, max_pixels: int):
    """string [B, F] -> float32 [B, F, S, S, 3] (0..255, as in training)."""
    shape = tf.shape(frames_bytes)
    pixels = images.preprocess_images(tf.reshape(frames_bytes, [-1]), image_size, max_pixels)
    pixels = tf.reshape(pixels, tf.concat([shape, [image_size, image_size, 3]], 0))  # [B, F, S, S, 3]
    return tf.cast(pixels, tf.float32)


def _warmup_frames(count: int) -> list[list[bytes]]:
    return [[export_core.warmup_jpeg()] * count]


class ActivityServingModule(tf.Module):
    """Serves LRCN activity recognition with the LRCN §4 test protocol (clips of `clip_length`
    frames every `clip_stride` frames, frame probabilities averaged).

    Signatures: `serving_default(frames)` with the RGB model; with a flow model also
    `flow(flow)` and `fusion(frames, flow)` = w_rgb·P_rgb + w_flow·P_flow (default (1/3, 2/3)).
    Each returns "label" string [B], "probabilities" float32 [B, C] and "classes" string [B, C].

    Args:
        rgb_model: an `LRCNActivityRecognizer` on frames.
        flow_model: one on flow images, or None.
        labels: class names in the models' output order (labels.txt).
        clip_length, clip_stride: the test-time clips.
        fusion: (w_rgb, w_flow).
        max_pixels: frames whose header claims more pixels are refused before decoding.
    """

    def __init__(self, rgb_model, flow_model, labels: Sequence[str], clip_length: int = 16,
                 clip_stride: int = 8, fusion=(1 / 3, 2 / 3), max_pixels: int = images.DEFAULT_MAX_PIXELS):
        super().__init__(name="activity")
        self.model_variables = list(rgb_model.variables) + (list(flow_model.variables) if flow_model else [])
        size = rgb_model.image_size
        classes = tf.constant(list(labels))

        def respond(probabilities):  # [B, C]
            batch = tf.shape(probabilities)[0]
            return {"label": tf.gather(classes, tf.argmax(probabilities, axis=-1)),
                    "probabilities": probabilities,
                    "classes": tf.tile(classes[tf.newaxis], [batch, 1])}

        def probabilities(model, stream, frames_bytes):
            frames = _decode_videos(frames_bytes, size, max_pixels)
            return clip_average_probabilities(lambda clips: model({stream: clips}, training=False),
                                              frames, clip_length, clip_stride)

        @tf.function(input_signature=[_FRAMES])
        def classify(frames):
            return respond(probabilities(rgb_model, "frames", frames))

        self.classify = classify
        self.classify_flow = self.classify_fusion = None
        if flow_model is not None:
            flow_spec = tf.TensorSpec([None, None], tf.string, name="flow")

            @tf.function(input_signature=[flow_spec])
            def classify_flow(flow):
                return respond(probabilities(flow_model, "flow", flow))

            @tf.function(input_signature=[_FRAMES, flow_spec])
            def classify_fusion(frames, flow):
                return respond(fusion[0] * probabilities(rgb_model, "frames", frames)
                               + fusion[1] * probabilities(flow_model, "flow", flow))

            self.classify_flow, self.classify_fusion = classify_flow, classify_fusion

    def signatures(self) -> dict:
        out = {"serving_default": self.classify.get_concrete_function()}
        if self.classify_flow is not None:
            out["flow"] = self.classify_flow.get_concrete_function()
            out["fusion"] = self.classify_fusion.get_concrete_function()
        return out


class VideoCaptionerServingModule(tf.Module):
    """Serves a video captioner (`VideoLRCNCaptioner`, `S2VTCaptioner`): frames -> N-best captions
    by beam search (`vcaption.decoding.beam_search`) through the model's `initial_state`/`step`.

    The model reads `model.num_frames` frames: longer videos are cut, shorter ones repeat their last
    frame (as `vcaption.data` did in training). Returns "captions" string [B, N], "scores" [B, N].
    """

    def __init__(self, model, vocabulary: text.Vocabulary, decode: DecodeConfig):
        super().__init__(name="video_captioner")
        check_decoder(model, vocabulary, decode)
        self.vocabulary = vocabulary
        self.model_variables = list(model.variables)
        size, count, max_length = model.image_size, model.num_frames, decode.max_length

        @tf.function(input_signature=[_FRAMES])
        def describe(frames):
            # The training pipeline's own clip decoder (same resize, padding and pixel limit).
            pixels = tf.map_fn(lambda video: data.decode_clip(video, size, count), frames,
                               fn_output_signature=tf.TensorSpec([count, size, size, 3], tf.uint8))
            state = model.initial_state(model.encode_visual(tf.cast(pixels, tf.float32)))
            result = decoding.beam_search(model.step, state, model.vocab_size, decode.beam_size,
                                          max_length, n_best=decode.n_best, alpha=decode.alpha)
            batch = tf.shape(result.ids)[0]
            flat = tf.reshape(result.ids, [-1, max_length])  # [B * N, length]
            return {"captions": tf.reshape(vocabulary.decode(flat), [batch, decode.n_best]),
                    "scores": result.scores}

        self.describe = describe

    def signatures(self) -> dict:
        return {"serving_default": self.describe.get_concrete_function()}


def export_activity(rgb_model, flow_model, labels: Sequence[str], export_dir_root: str, name: str,
                    clip_length: int = 16, clip_stride: int = 8) -> str:
    """Exports activity recognition as `<root>/<name>/<version>/`; returns the path."""
    module = ActivityServingModule(rgb_model, flow_model, labels, clip_length, clip_stride)
    return export_core.save_versioned(module, module.signatures(), export_dir_root, name,
                                 {"frames": _warmup_frames(clip_length)})


def export_video_captioner(model, vocab_path: str, export_dir_root: str, name: str,
                           decode: DecodeConfig = DecodeConfig()) -> str:
    """Exports a video captioner as `<root>/<name>/<version>/`; returns the path."""
    module = VideoCaptionerServingModule(model, text.Vocabulary(vocab_path), decode)
    return export_core.save_versioned(module, module.signatures(), export_dir_root, name,
                                 {"frames": _warmup_frames(model.num_frames)})
