"""Video presets: LRCN activity recognition (Donahue et al. §4) and video description (mean-pool,
Venugopalan et al. NAACL 2015; S2VT, Venugopalan et al. ICCV 2015; a frame LSTM with a factored decoder;
LRCN §6 semantic-tuple decoders, Donahue et al. §6, Table 7),
sized for the built-in videos (32x32 frames, 24 frames, 480 videos) on a 2-core CPU.

The papers' sizes are one `--set` away: `--set model.rgb_hidden_units=256 --set
model.flow_hidden_units=1024` (the `LRCNActivityRecognizer` defaults), `--set model.hidden_units=1000`.
Tasks: `vcaption.video.activity`, `vcaption.video.description`. Data: the built-in world's MSR-VTT
videos preprocessed with `beam_jobs.preprocess --format msvd --optical-flow` under `data.shapes_root`.
"""

from __future__ import annotations

import dataclasses

from vcaption.config import DataConfig, DecodeConfig, ExperimentConfig, TrainConfig, preset

_VIDEO_DATA = DataConfig(image_size=32, min_count=1, max_length=16)
# Movers cross 0.6 of a 32-pixel frame in 23 frames (~0.8 px per frame): 48 grey levels per pixel
# of displacement keep that motion well inside [0, 255] (LRCN §4 scales flow to fill the range).
_VIDEO_TASK = {"videos": 480, "frames": 24, "video_size": 32, "clip_length": 16, "clip_stride": 8,
               "flow_scale": 48.0}

# The three description systems share sizes so that the table compares architectures.
_DECODER = {"hidden_units": 128, "embedding_dim": 64, "frame_features": 128, "dropout": 0.2}
FRAME_LSTM = "frame LSTM + factored decoder"
DESCRIPTION_SYSTEMS = {
    "mean-pool (NAACL 2015)": {"model": "VideoLRCNCaptioner", "video_encoder": "mean_pool",
                               "variant": "2u", "image_embedding_dim": 128, **_DECODER},
    "S2VT (ICCV 2015)": {"model": "S2VTCaptioner", **_DECODER},
    # An LSTM over the frames whose last state enters LRCN's §5 factored decoder at every step;
    # not §6's (no semantic tuple): the §6 decoders are `SEMANTIC_TUPLE_SYSTEMS`.
    FRAME_LSTM: {"model": "VideoLRCNCaptioner", "video_encoder": "lstm", "variant": "2f",
                 "encoder_units": 128, "image_embedding_dim": 128, **_DECODER},
}
# LRCN §6 (Fig. 6, Table 7): one tuple predictor, then two-layer unfactored decoders (2u) that read
# (a) its argmax words through an encoder LSTM, (b) its argmax one-hot, (c) its slot
# probabilities, and the true tuple (oracle), at every step.
_TUPLE_DECODER = {"model": "SemanticTupleCaptioner", "variant": "2u", "image_embedding_dim": 64,
                  **{k: v for k, v in _DECODER.items() if k != "frame_features"}}
SEMANTIC_TUPLE_SYSTEMS = {
    "(a) encoder-decoder on tuple words": {**_TUPLE_DECODER, "tuple_input": "words", "encoder_units": 64},
    "(b) decoder, argmax tuple": {**_TUPLE_DECODER, "tuple_input": "argmax"},
    "(c) decoder, tuple probabilities": {**_TUPLE_DECODER, "tuple_input": "probabilities"},
    "oracle tuple": {**_TUPLE_DECODER, "tuple_input": "oracle"},
}


@preset
def lrcn_activity() -> ExperimentConfig:
    """LRCN activity recognition on RGB frames and on optical flow, their single-frame baselines and
    the late fusions (1/2, 1/2) and (1/3, 2/3) of each, in one table (LRCN §4, Table 1).

    Per-frame CNN (small_cnn 8-16-32, 64 features) -> LSTM (64 units RGB, 128 flow here; the
    paper's 256 / 1024 with `--set model.rgb_hidden_units=256 --set model.flow_hidden_units=1024`)
    -> per-frame softmax; trained on random 16-frame clips; tested on clips of 16 with stride 8.

    Command: `python -m vcaption.train --preset lrcn_activity --output runs/lrcn_activity`.
    Result on the built-in (harder, ten-activity) videos, 48 test videos, 20 epochs (480 steps)
    per model, 17.5 min of training on a 2-core CPU at load average ~28: LRCN flow 77.1 % vs
    single-frame flow 64.6 %, LRCN RGB 50.0 % vs single-frame RGB 29.2 %, LRCN fusion (1/3, 2/3)
    77.1 %. A single frame cannot order "then back" / "then stopping"; the LSTM can, but is far
    from done at this budget. Full table: README ("Harder videos and LRCN §6").
    """
    return ExperimentConfig(
        name="lrcn_activity", model="LRCNActivityRecognizer", task="activity",
        task_args=dict(_VIDEO_TASK),
        # A CNN half as wide as before (8-16-32, 64 features): the harder videos need more steps,
        # and this keeps the four models within ~20 minutes on a loaded 2-core CPU.
        model_args={"rgb_hidden_units": 64, "flow_hidden_units": 128, "cnn_features": 64,
                    "cnn_filters": (8, 16, 32), "dropout": 0.3},
        data=_VIDEO_DATA, train=TrainConfig(epochs=20, batch_size=16, learning_rate=2e-3))


def _description(name: str, systems: dict) -> ExperimentConfig:
    return ExperimentConfig(
        name=name, model="", model_args={}, task="video_caption",
        # Every other frame (12 of 24) halves the per-frame CNN's cost and still shows the motion.
        task_args={**_VIDEO_TASK, "frame_stride": 2, "systems": systems}, data=_VIDEO_DATA,
        # 50 epochs (600 steps) leave every system near CIDEr-D 2.6-2.8, still learning shapes.
        train=TrainConfig(epochs=100, batch_size=32, learning_rate=2e-3),
        decode=DecodeConfig(beam_size=3, max_length=17, n_best=3))


@preset
def video_description() -> ExperimentConfig:
    """Mean-pool, S2VT and the LRCN decoder trained on the same data, in one table (beam 3).

    Command: `python -m vcaption.train --preset video_description --output runs/video_description`.
    Result on the built-in videos: README ("Video: activity recognition and description"). The best
    system by CIDEr-D is exported (frames -> N-best captions).
    """
    return _description("video_description", DESCRIPTION_SYSTEMS)


@preset
def video_mean_pool() -> ExperimentConfig:
    """Mean-pooled frame features at every step of a 2-layer LSTM (Venugopalan et al., NAACL 2015).

    Command: `python -m vcaption.train --preset video_mean_pool`.
    Result on the earlier, easier built-in videos (not re-measured on the
    harder ones; 48 test videos, beam 3): CIDEr-D 3.14, BLEU-4 0.746, METEOR 0.508;
    1,200 steps in 9.5 min on a loaded 2-core CPU.
    """
    name = "mean-pool (NAACL 2015)"
    return _description("video_mean_pool", {name: DESCRIPTION_SYSTEMS[name]})


@preset
def video_s2vt() -> ExperimentConfig:
    """S2VT: one stacked LSTM reads the frames, then emits the words (Venugopalan et al., ICCV 2015).

    Command: `python -m vcaption.train --preset video_s2vt`.
    Result on the earlier, easier built-in videos (not re-measured on the
    harder ones; 48 test videos, beam 3): CIDEr-D 3.67, BLEU-4 0.897, METEOR 0.629,
    ROUGE-L 0.969; 1,200 steps in 10 min on a loaded 2-core CPU.
    """
    return _description("video_s2vt", {"S2VT (ICCV 2015)": DESCRIPTION_SYSTEMS["S2VT (ICCV 2015)"]})


@preset
def video_lrcn_pooled() -> ExperimentConfig:
    """The LRCN decoder (§6) whose per-frame CNN adds a global max pool beside its grid (what the
    object is wherever it is; `vcaption.video.lrcn.build_frame_cnn`).

    Command: `python -m vcaption.train --preset video_lrcn_pooled`.
    Result on the built-in videos: README ("Video: activity recognition and description").
    """
    return _description("video_lrcn_pooled", {"frame LSTM + factored decoder, pooled CNN": {
        **DESCRIPTION_SYSTEMS[FRAME_LSTM], "global_pool": True}})


@preset
def video_lrcn() -> ExperimentConfig:
    """LRCN video description: encoder LSTM over the frames, factored decoder with the video at every
    step (Donahue et al. §6).

    Command: `python -m vcaption.train --preset video_lrcn`.
    Result on the earlier, easier built-in videos (not re-measured on the
    harder ones; 48 test videos, beam 3): CIDEr-D 3.59, BLEU-4 0.858, METEOR 0.609,
    ROUGE-L 0.951; 1,200 steps in 9.1 min on a loaded 2-core CPU.
    """
    return _description("video_lrcn", {FRAME_LSTM: DESCRIPTION_SYSTEMS[FRAME_LSTM]})


@preset
def video_semantic_tuples() -> ExperimentConfig:
    """LRCN §6 in the layout of its Table 7: a tuple predictor (per-slot softmax heads on a CNN ->
    LSTM clip encoder; `vcaption.video.semantic_tuple`), then (a) an encoder-decoder over its
    argmax words, (b) a decoder fed its argmax tuple and (c) one fed its slot probabilities at
    every step, and the oracle (true tuple) decoder, beside mean-pool, S2VT and the frame LSTM,
    all trained on the same data; BLEU-4 and METEOR, and the predictor's accuracy per slot beside
    a majority-class baseline.

    Command: `python -m vcaption.train --preset video_semantic_tuples --output runs/video_semantic_tuples`.
    Result on the built-in videos (48 test videos, beam 3; BLEU-4 / METEOR %): (a) 22.1 / 21.6,
    (b) 35.5 / 30.7, (c) 45.3 / 35.0, oracle 95.9 / 69.0, mean-pool 26.4 / 24.3, S2VT
    19.3 / 22.2, frame LSTM 27.2 / 25.2; tuple predictor per slot (colour, shape, verb, place)
    47.9 / 45.8 / 60.4 / 79.2 % vs majority class 14.6 / 29.2 / 27.1 / 27.1 %; eight models in
    19.2 min of training on a 2-core CPU at load ~28. Full tables: README ("Harder videos and LRCN §6").
    """
    cfg = _description("video_semantic_tuples", {**SEMANTIC_TUPLE_SYSTEMS, **DESCRIPTION_SYSTEMS})
    # Eight models in one run: every third frame (8 of 24) and 25 epochs (300 steps each) keep it
    # near 40 minutes on a loaded 2-core CPU.
    return dataclasses.replace(cfg, task_args={**cfg.task_args, "frame_stride": 3},
                               train=dataclasses.replace(cfg.train, epochs=25))
