"""LRCN §6 video description through a semantic tuple: a tuple predictor per clip, and the three
decoders that read its output (Donahue et al., PAMI 2017, §6, Fig. 6, Table 7).

The paper first predicts a clip's semantic representation, a (subject, verb, object, place) tuple,
with a CRF, then describes it with one of

    (a) an LSTM encoder-decoder whose encoder reads the tuple's most likely words,
    (b) an LSTM decoder given the tuple's argmax, one-hot per slot, at every step,
    (c) the same decoder given the CRF's slot probability distributions at every step,

and finds that (c), which passes the predictor's uncertainty on, wins. Here the tuple is the
shapes world's (colour, shape, verb, place) (`vcaption.datasets.shapes.TUPLE_SLOTS`), and an
"oracle" input (the true tuple, one-hot) bounds what a better tuple predictor could give.

The predictor is per-slot softmax classifiers on one shared video encoder, not a CRF: the paper's
CRF joined unaries from separate detectors with pairwise potentials, while here one LSTM reads the
whole clip and every slot's head conditions on all of it; and (c) needs each slot's marginal
distribution, which a softmax head is, where a CRF would need forward-backward to get it.
"""

from __future__ import annotations

import keras
from keras import ops

from vcaption.captioning.lrcn import LRCNCaptioner
from vcaption.layers import IMAGE_ENCODER_KEYS, Recurrence
from vcaption.video.lrcn import FrameWise, LastTimeStep, build_frame_cnn

# What the decoder reads (LRCN Fig. 6): (a) "words", (b) "argmax", (c) "probabilities"; "oracle"
# is the true tuple, one-hot, given as the model's input instead of frames.
TUPLE_INPUTS = ("words", "argmax", "probabilities", "oracle")


def _slot_slices(slot_sizes):
    starts = [sum(slot_sizes[:k]) for k in range(len(slot_sizes))]
    return [(start, start + size) for start, size in zip(starts, slot_sizes)]


@keras.saving.register_keras_serializable(package="vcaption")
class SlotSoftmax(keras.layers.Layer):
    """`[B, ΣK] logits -> [B, ΣK]`: a softmax within each slot's K_s entries (each slot sums to 1)."""

    def __init__(self, slot_sizes, **kwargs):
        super().__init__(**kwargs)
        self.slot_sizes = tuple(int(k) for k in slot_sizes)

    def call(self, logits):
        return ops.concatenate([ops.softmax(logits[:, a:b], axis=-1)
                                for a, b in _slot_slices(self.slot_sizes)], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "slot_sizes": list(self.slot_sizes)}


@keras.saving.register_keras_serializable(package="vcaption")
class TupleInput(keras.layers.Layer):
    """Slot distributions `[B, ΣK]` -> what a §6 decoder reads.

    * `"probabilities"` (c): the distributions themselves;
    * `"argmax"` (b): per slot, the one-hot of its most likely value;
    * `"words"` (a): per slot, the id of its most likely value among all slots' values
      (slot s's value v is `offset_s + v`), int32 `[B, slots]`, for an encoder to read as words.

    With one-hot distributions "argmax" and "probabilities" are the same tensor: (b) and (c)
    differ only by what the predictor is unsure of.
    """

    def __init__(self, slot_sizes, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("probabilities", "argmax", "words"):
            raise ValueError(f"mode must be 'probabilities', 'argmax' or 'words', got {mode!r}")
        self.slot_sizes = tuple(int(k) for k in slot_sizes)
        self.mode = mode

    def call(self, distributions):
        if self.mode == "probabilities":
            return distributions
        slices = _slot_slices(self.slot_sizes)
        best = [ops.argmax(distributions[:, a:b], axis=-1) for a, b in slices]  # per slot [B]
        if self.mode == "words":
            return ops.stack([ops.cast(v, "int32") + a for v, (a, _) in zip(best, slices)], axis=1)
        return ops.concatenate([ops.one_hot(v, b - a, dtype=distributions.dtype)
                                for v, (a, b) in zip(best, slices)], axis=-1)  # [B, ΣK]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.slot_sizes)) if self.mode == "words" else input_shape

    def compute_output_spec(self, distributions):
        dtype = "int32" if self.mode == "words" else distributions.dtype
        return keras.KerasTensor(self.compute_output_shape(distributions.shape), dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "slot_sizes": list(self.slot_sizes), "mode": self.mode}


@keras.saving.register_keras_serializable(package="vcaption")
class TuplePredictor(keras.Model):
    """A clip's semantic tuple: per-frame CNN -> LSTM -> h_T -> one softmax per slot.

    The logits of all slots come out side by side, `[B, ΣK]` (slot s in its own K_s columns);
    `SlotSoftmax` turns them into the slot distributions P(slot_s = v | clip) that decoder (c)
    reads, and `SlotCrossEntropy` trains them (the sum of the slots' cross-entropies).

    Args:
        slot_sizes: K_s, the number of values of each slot (`TUPLE_VALUES`).
        num_frames: frames per clip (`None`: any).
        image_size: frame side S.
        hidden_units: LSTM size.
        cnn_features: size of φ_V(x_t).
        cnn_filters: channels of the per-frame CNN's blocks.
        global_pool: per-frame CNN with a global max pool beside its grid (`build_frame_cnn`).
        dropout: rate on the CNN features and on h_T.

    Example:
    ```python
    predictor = TuplePredictor(slot_sizes=(6, 4, 5, 5), num_frames=12, image_size=32)
    logits = predictor({"frames": frames})  # [batch, 20]
    ```

    Reference: Donahue et al., PAMI 2017, §6 (the CRF's role; see the module docstring for why
    per-slot classifiers).
    """

    def __init__(self, slot_sizes, num_frames=None, image_size=32, hidden_units=128,
                 cnn_features=128, cnn_filters=(16, 32, 64), global_pool=True, dropout=0.3, **kwargs):
        slot_sizes = tuple(int(k) for k in slot_sizes)
        # === Layers ===
        self.frame_cnn = build_frame_cnn(image_size, cnn_features, cnn_filters, global_pool=global_pool)
        self.recurrence = Recurrence(hidden_units, cell="lstm", name="recurrence")
        self.input_projection = keras.layers.Dense(self.recurrence.projection_units, use_bias=False,
                                                   name="input_projection")
        self.slot_logits = keras.layers.Dense(sum(slot_sizes), name="slot_logits")

        # === Functional Model ===
        frames = keras.Input(shape=(num_frames, image_size, image_size, 3), name="frames")
        x = FrameWise(self.frame_cnn, name="per_frame_cnn")(frames)  # [B, T, F]
        x = keras.layers.Dropout(dropout, name="cnn_dropout")(x)
        x = self.recurrence(self.input_projection(x))  # [B, T, H]
        h = LastTimeStep(name="last_step")(x)  # [B, H]: the whole clip read
        h = keras.layers.Dropout(dropout, name="hidden_dropout")(h)
        super().__init__(inputs={"frames": frames}, outputs=self.slot_logits(h), **kwargs)  # [B, ΣK]

        # === Config ===
        self.slot_sizes = slot_sizes
        self.num_frames = num_frames
        self.image_size = int(image_size)
        self.hidden_units = int(hidden_units)
        self.cnn_features = int(cnn_features)
        self.cnn_filters = tuple(int(f) for f in cnn_filters)
        self.global_pool = bool(global_pool)
        self.dropout = float(dropout)

    def architecture(self) -> dict:
        """The arguments that fix the weights' layout (what a §6 decoder needs to hold a copy)."""
        return {"num_frames": self.num_frames, "image_size": self.image_size,
                "hidden_units": self.hidden_units, "cnn_features": self.cnn_features,
                "cnn_filters": list(self.cnn_filters), "global_pool": self.global_pool}

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "slot_sizes": list(self.slot_sizes),
                "dropout": self.dropout, **self.architecture()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="vcaption")
class SlotCrossEntropy(keras.losses.Loss):
    """Σ_s −log P(slot_s = y_s | clip): one cross-entropy per slot on its own logits, summed.

    Targets: int `[B, slots]` (each slot's value index); predictions: `TuplePredictor` logits.
    """

    def __init__(self, slot_sizes, name="slot_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.slot_sizes = tuple(int(k) for k in slot_sizes)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        losses = [keras.losses.sparse_categorical_crossentropy(y_true[:, s], y_pred[:, a:b],
                                                               from_logits=True)
                  for s, (a, b) in enumerate(_slot_slices(self.slot_sizes))]
        return ops.sum(ops.stack(losses, axis=-1), axis=-1)  # [B]

    def get_config(self):
        return {**super().get_config(), "slot_sizes": list(self.slot_sizes)}


@keras.saving.register_keras_serializable(package="vcaption")
class SemanticTupleCaptioner(LRCNCaptioner):
    """LRCN §6: a decoder that describes a clip from its predicted semantic tuple.

    With `tuple_input` "words", "argmax" or "probabilities" the model reads frames: a frozen copy
    of the trained `TuplePredictor` (its weights set with `load_predictor`) gives the slot
    distributions, `TupleInput` turns them into what the decoder reads, and that enters a
    two-layer unfactored LSTM decoder (`variant="2u"`, LRCN §6: layer 1 sees [word, tuple]) at
    every step:

    * (a) `"words"`: an encoder LSTM reads the argmax tuple as `slots` words (its own embedding)
      and its last state h_T is the decoder's input. The paper's encoder-decoder hands h_T over
      once; here it enters every step like (b) and (c), so the three differ only in what the
      tuple becomes.
    * (b) `"argmax"`: the one-hot argmax of each slot, concatenated `[B, ΣK]`.
    * (c) `"probabilities"`: the slot distributions, concatenated `[B, ΣK]`.
    * `"oracle"`: the input is the true tuple, one-hot `[B, ΣK]`, instead of frames (a bound on
      (b) and (c); it needs the truth, so it is scored, not exported).

    Everything after the tuple is `LRCNCaptioner`'s, so the shared decoders (`vcaption.decoding`)
    and the video captioner export (frames -> N-best captions) run it unchanged.

    Args:
        slot_sizes: K_s of each slot.
        tuple_input: one of `TUPLE_INPUTS`.
        num_frames: T, frames per clip (not "oracle").
        predictor: `TuplePredictor.architecture()` of the predictor whose weights it holds.
        encoder_units: size of the tuple-word encoder LSTM ("words").
        tuple_embedding_dim: embedding size of the tuple's words ("words").
        image_size: frame side S.
        **kwargs: `LRCNCaptioner` arguments (vocab_size, variant, hidden_units, embedding_dim,
            image_embedding_dim, dropout, ...).

    Example:
    ```python
    model = SemanticTupleCaptioner(vocab_size=60, slot_sizes=(6, 4, 5, 5), tuple_input="probabilities",
                                   num_frames=12, predictor=predictor.architecture(), variant="2u")
    model.load_predictor(predictor)
    logits = model({"visual": frames, "caption_in": caption_in})  # [batch, time, 60]
    ```

    Reference: Donahue et al., PAMI 2017, §6, Fig. 6, Table 7.
    """

    def __init__(self, vocab_size, slot_sizes, tuple_input="probabilities", num_frames=16,
                 predictor=None, encoder_units=64, tuple_embedding_dim=32, image_size=32,
                 variant="2u", **kwargs):
        if tuple_input not in TUPLE_INPUTS:
            raise ValueError(f"tuple_input must be one of {TUPLE_INPUTS}, got {tuple_input!r}")
        for key in ("encoder", "feature_dim", "encoder_weights", "encoder_trainable"):
            kwargs.pop(key, None)  # fixed by the tuple (present in saved configs)
        self._tuple = dict(slot_sizes=tuple(int(k) for k in slot_sizes), tuple_input=tuple_input,
                           num_frames=int(num_frames), predictor=dict(predictor or {}),
                           encoder_units=int(encoder_units),
                           tuple_embedding_dim=int(tuple_embedding_dim))
        super().__init__(vocab_size, variant=variant, encoder="tuple", image_size=image_size,
                         feature_dim=sum(self._tuple["slot_sizes"]), **kwargs)
        for key, value in self._tuple.items():
            setattr(self, key, value)

    def _build_visual_input(self, encoder, image_size, feature_dim, encoder_weights,
                            encoder_trainable, dtype):
        spec = self._tuple
        slot_sizes, mode = spec["slot_sizes"], spec["tuple_input"]
        caption_in = keras.Input(shape=(None,), dtype="int32", name="caption_in")
        self.tuple_predictor = None
        if mode == "oracle":
            visual = keras.Input(shape=(sum(slot_sizes),), name="visual")
            tuple_in = keras.Input(shape=(sum(slot_sizes),), name="tuple")
            self.encoder = keras.Model(tuple_in, keras.layers.Identity(name="true_tuple")(tuple_in),
                                       name="tuple_encoder")
            return visual, caption_in, None
        image_size = int(image_size)
        shape = (spec["num_frames"], image_size, image_size, 3)
        # Dropout off and weights frozen: the predictor is trained first, on its own (LRCN §6).
        self.tuple_predictor = TuplePredictor(slot_sizes, **{**spec["predictor"], "image_size": image_size,
                                                             "num_frames": spec["num_frames"]},
                                              dropout=0.0, name="tuple_predictor")
        self.tuple_predictor.trainable = False
        frames = keras.Input(shape=shape, name="frames")
        distributions = SlotSoftmax(slot_sizes, name="slot_distributions")(
            self.tuple_predictor({"frames": frames}, training=False))  # [B, ΣK]
        if mode == "words":
            words = TupleInput(slot_sizes, "words", name="tuple_words")(distributions)  # [B, slots]
            x = keras.layers.Embedding(sum(slot_sizes), spec["tuple_embedding_dim"],
                                       name="tuple_word_embedding")(words)  # [B, slots, E_t]
            recurrence = Recurrence(spec["encoder_units"], cell="lstm", name="tuple_encoder_recurrence")
            x = keras.layers.Dense(recurrence.projection_units, use_bias=False,
                                   name="tuple_encoder_projection")(x)  # [B, slots, 4H_e]
            summary = LastTimeStep(name="last_word")(recurrence(x))  # [B, H_e]
        else:
            summary = TupleInput(slot_sizes, mode, name=f"tuple_{mode}")(distributions)  # [B, ΣK]
        self.encoder = keras.Model(frames, summary, name="tuple_encoder")
        visual = keras.Input(shape=shape, name="visual")
        return visual, caption_in, image_size

    def _encode_per_caption(self, visual, caption_in):
        return self.encoder(visual)  # one description per clip in video batches

    def load_predictor(self, predictor: TuplePredictor) -> None:
        """Copies a trained `TuplePredictor`'s weights into the frozen copy this model reads."""
        if self.tuple_predictor is None:
            raise ValueError("an oracle-tuple captioner reads the true tuple, not a predictor")
        self.tuple_predictor.set_weights(predictor.get_weights())

    def get_config(self):
        config = super().get_config()
        for key in IMAGE_ENCODER_KEYS:
            config.pop(key, None)
        config.update({**self._tuple, "slot_sizes": list(self._tuple["slot_sizes"])})
        config["image_size"] = self.image_size
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
