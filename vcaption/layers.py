"""Recurrent building blocks shared by the captioners.

On a CPU the captioners never call `keras.layers.LSTM`. A recurrence is split in two so that the
expensive work happens outside the time loop:

1. the *input projections* (W·x_t for every t, and W_v·v once per caption for the image) are
   ordinary `Dense` layers applied to the whole `[batch, time, features]` tensor in one matmul;
2. `Recurrence` then runs only `h_{t-1}·U` (plus the cell non-linearities) inside a
   `keras.ops.scan` (a `tf.while_loop` on the TensorFlow backend).

`Recurrence.step` applies the same weights to one time step, which is what the decoding module
calls; running `step` T times reproduces `Recurrence.__call__` on the whole sequence.

On a GPU that loop is several small kernel launches per time step, where cuDNN runs a whole LSTM
sequence as one fused kernel. `SharedWeightsLSTM` is `keras.layers.LSTM` in its cuDNN configuration
computing with a `Recurrence`'s U and b and the caller's W, so one set of variables (and
checkpoints) serves both paths and `step`.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

# m-RNN's "S-tanh" (Mao et al. 2015, §3, after LeCun et al. 1998 "Efficient BackProp"):
# g(x) = 1.7159·tanh(2x/3).
S_TANH_SCALE = 1.7159
S_TANH_SLOPE = 2.0 / 3.0

CELL_TYPES = ("lstm", "rnn")
# How a captioner runs its LSTMs over a whole caption (teacher forcing); decoding always uses `step`.
RECURRENT_IMPLEMENTATIONS = ("auto", "scan", "cudnn")


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (False on other backends: the cuDNN path is TensorFlow's)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    # Logical devices, as Keras checks before it picks cuDNN: GPUs hidden with
    # tf.config.set_visible_devices do not count.
    return bool(tf.config.list_logical_devices("GPU"))


def resolve_recurrent_implementation(requested: str, cell: str) -> str:
    """`"scan"` or `"cudnn"` for a captioner's `recurrent_implementation` argument.

    `"auto"` is `"cudnn"` for LSTMs when a GPU is visible and `"scan"` otherwise: on a CPU there is
    no fused kernel, and the scan keeps the input projections out of the time loop. `"cudnn"` is
    accepted without a GPU (`keras.layers.LSTM` then runs its own step loop), which is how the
    CPU tests compare the two paths. A simple RNN has no cuDNN path.
    """
    if requested not in RECURRENT_IMPLEMENTATIONS:
        raise ValueError(f"recurrent_implementation must be one of {RECURRENT_IMPLEMENTATIONS}, "
                         f"got {requested!r}")
    if requested == "cudnn" and cell != "lstm":
        raise ValueError(f"recurrent_implementation='cudnn' needs cell='lstm', got cell={cell!r}")
    if requested == "auto":
        return "cudnn" if cell == "lstm" and gpu_visible() else "scan"
    return requested


def _bias_add(x, bias):
    """x + bias. On TensorFlow a BiasAdd op, not an Add: inside decoding loops Grappler's
    arithmetic optimizer rewrites trees of Adds with mixed shapes into temporaries that leak when a
    loop exits early ("AlreadyExistsError ... AddOpsRewrite ... tmp_var" on the next call)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.bias_add(x, bias)
    return x + bias


def scaled_tanh(x):
    """m-RNN's element-wise scaled hyperbolic tangent g(x) = 1.7159·tanh(2x/3).

    Reference: Mao et al., "Deep Captioning with Multimodal Recurrent Neural Networks (m-RNN)",
    ICLR 2015, Eq. 3 (the multimodal layer's activation g₂).
    """
    return S_TANH_SCALE * ops.tanh(S_TANH_SLOPE * x)


def log_frequency_bias(word_counts, min_frequency: float = 1e-6) -> np.ndarray:
    """Softmax bias b_o = log(count / total), floored for words that never occur.

    Karpathy & Fei-Fei (CVPR 2015) §3.2 initialise the output bias to the log frequency of each
    word, so that an untrained model already predicts the unigram distribution. The floor keeps
    `<pad>`, `<start>` and unseen words at a large finite negative value instead of -inf.

    Args:
        word_counts: array-like `[vocab_size]` of non-negative counts, indexed by token id.
        min_frequency: lower bound on count / total before taking the log.

    Returns:
        float32 array `[vocab_size]`.
    """
    counts = np.asarray(word_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"word_counts must be 1-D, got shape {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("word_counts must be non-negative")
    total = counts.sum()
    if total <= 0:
        raise ValueError("word_counts must contain at least one positive count")
    frequency = np.maximum(counts / total, min_frequency)
    return np.log(frequency).astype(np.float32)


@keras.saving.register_keras_serializable(package="vcaption")
class ScaledTanh(keras.layers.Layer):
    """Layer form of `scaled_tanh`, g(x) = 1.7159·tanh(2x/3) (m-RNN, Mao et al. 2015, Eq. 3)."""

    def call(self, inputs):
        return scaled_tanh(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="vcaption")
class BroadcastTime(keras.layers.Layer):
    """Adds a per-caption vector to every time step: `[B, T, D] + [B, D] -> [B, T, D]`.

    This is how an image projection computed once per caption (e.g. LRCN's W_v·v, m-RNN's V_I·I)
    joins per-step word projections without being recomputed at every step.
    """

    def call(self, sequence, vector):
        return sequence + ops.expand_dims(vector, 1)  # [batch, 1, dim] broadcast over time

    def compute_output_shape(self, sequence_shape, vector_shape):
        return sequence_shape


@keras.saving.register_keras_serializable(package="vcaption")
class RepeatPerCaption(keras.layers.Layer):
    """Repeats each image's features for its captions: `[images, F], [captions, T] -> [captions, F]`.

    Training batches can hold each image once, followed by its K captions in order
    (`data.make_dataset(..., captions_per_image=K)`), so that the CNN runs once per image instead of
    once per caption — the CNN is most of a step's work. With one caption per image (evaluation,
    decoding, the ungrouped pipeline) it is the identity.
    """

    def call(self, features, caption_in):
        repeats = ops.shape(caption_in)[0] // ops.shape(features)[0]
        return ops.repeat(features, repeats, axis=0)

    def compute_output_shape(self, features_shape, caption_in_shape):
        return (caption_in_shape[0],) + tuple(features_shape[1:])


@keras.saving.register_keras_serializable(package="vcaption")
class FirstStepBias(keras.layers.Layer):
    """Adds a per-caption bias at the first time step only: `x[:, 0] += b`.

    Karpathy & Fei-Fei (CVPR 2015) Eq. 14: h_t = f(W_hx·x_t + W_hh·h_{t-1} + b_h + 1(t=1)⊙b_v).
    The output of this layer is the non-recurrent part of that pre-activation, which tests read
    to check that the image reaches t=1 only.
    """

    def call(self, sequence, bias):
        first = sequence[:, :1, :] + ops.expand_dims(bias, 1)  # [batch, 1, dim]
        return ops.concatenate([first, sequence[:, 1:, :]], axis=1)  # [batch, time, dim]

    def compute_output_shape(self, sequence_shape, bias_shape):
        return sequence_shape


class SharedWeightsLSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` in its cuDNN-compatible configuration, computing with weights it is given.

    The configuration is the one in which Keras runs the TensorFlow backend's fused cuDNN kernel
    (`CudnnRNNV3`, the whole sequence in one call) whenever a GPU is visible: tanh activation,
    sigmoid recurrent activation, a bias, no recurrent dropout, no unrolling. Without a GPU Keras
    falls back to its own step loop, same arithmetic. No mask is passed: the captioners run right-
    padded captions through the pads, as the scan does (the loss ignores those steps), which also
    avoids cuDNN's failure on a row that is masked throughout.

    Keras' LSTM owns `kernel` W, `recurrent_kernel` U and `bias` b (gate order i, f, c, o). This one
    owns none: they come with each call, so the variables of a `Recurrence` (U, b; gate order i, f,
    g, o, the same) and of its input projections (W) train through cuDNN and keep their checkpoint
    layout, and `Recurrence.step` decodes with them. Create it outside `tf.function` (its cell holds
    a dropout seed generator, a variable), e.g. in the model's constructor.

    Args:
        units: int. Hidden size H.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    lstm = SharedWeightsLSTM(8)
    hidden = lstm(x, kernel, recurrent_kernel, bias)  # [B, T, D], [D, 32], [8, 32], [32] -> [B, T, 8]
    ```
    """

    def __init__(self, units, **kwargs):
        super().__init__(units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                         recurrent_dropout=0.0, unroll=False, return_sequences=True,
                         use_cudnn="auto", **kwargs)
        # Nothing to build: the weights arrive with each call.
        self.cell.built = True
        self.built = True

    def call(self, sequences, kernel, recurrent_kernel, bias, training=False):
        cell = self.cell
        # Tensors, never the variables themselves, so that the cell does not start tracking them.
        cell.kernel, cell.recurrent_kernel, cell.bias = (
            ops.cast(ops.convert_to_tensor(w), self.compute_dtype)
            for w in (kernel, recurrent_kernel, bias))
        try:
            return super().call(sequences, training=training)
        finally:
            cell.kernel = cell.recurrent_kernel = cell.bias = None  # no traced tensors kept


@keras.saving.register_keras_serializable(package="vcaption")
class Recurrence(keras.layers.Layer):
    """The recurrent half of an LSTM or a simple RNN, over precomputed input projections.

    The layer owns the recurrent kernel U (and optionally the bias b); the input-to-hidden
    projections W·x_t are computed by the caller for all time steps at once and passed in as
    `input_projection`. Per time step this layer computes

    * `cell="rnn"`:  h_t = f(a_t + b + h_{t-1}·U)  with f = `activation` (Karpathy Eq. 14, m-RNN Eq. 2)
    * `cell="lstm"`: [i, f, g, o] = a_t + b + h_{t-1}·U;  c_t = σ(f)⊙c_{t-1} + σ(i)⊙tanh(g);
      h_t = σ(o)⊙tanh(c_t)  (Donahue et al. PAMI 2017, Eq. 2; gate order i, f, g, o)

    so `input_projection` has `4 * units` features for an LSTM and `units` for an RNN. Only the
    `h_{t-1}·U` matmul runs inside the loop; the bias is added to the whole sequence beforehand.
    No dropout is applied inside the recurrence.

    Args:
        units: int. Hidden size H.
        cell: `"lstm"` or `"rnn"`.
        activation: non-linearity f of the simple RNN (`"tanh"` or `"relu"`); ignored for LSTMs.
        use_bias: whether the layer owns a bias b (the LSTM forget-gate slice starts at 1).
        recurrent_initializer: initializer of U.

    Example:
    ```python
    dense = keras.layers.Dense(4 * 8, use_bias=False)
    recurrence = Recurrence(8, cell="lstm")
    hidden = recurrence(dense(x))  # x [batch, time, features] -> [batch, time, 8]
    state = recurrence.get_initial_state(batch_size)
    h, state = recurrence.step(dense(x[:, 0]), state)
    ```
    """

    def __init__(self, units, cell="lstm", activation="tanh", use_bias=True,
                 recurrent_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        if cell not in CELL_TYPES:
            raise ValueError(f"cell must be one of {CELL_TYPES}, got {cell!r}")
        self.units = int(units)
        self.cell = cell
        self.activation = keras.activations.get(activation)
        self._activation_name = activation if isinstance(activation, str) else \
            keras.activations.serialize(self.activation)
        self.use_bias = bool(use_bias)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)

    @property
    def projection_units(self) -> int:
        """Width of `input_projection`: 4H for an LSTM (gates i, f, g, o), H for an RNN."""
        return 4 * self.units if self.cell == "lstm" else self.units

    @property
    def state_keys(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)

    def build(self, input_shape):
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.units, self.projection_units),
            initializer=self.recurrent_initializer)
        if self.use_bias:
            if self.cell == "lstm":
                units = self.units

                def bias_initializer(shape, dtype=None):
                    # Forget-gate bias 1 (Jozefowicz et al. 2015) so early gradients flow through c.
                    return ops.concatenate([ops.zeros((units,), dtype), ops.ones((units,), dtype),
                                            ops.zeros((2 * units,), dtype)])
            else:
                bias_initializer = "zeros"
            self.bias = self.add_weight(name="bias", shape=(self.projection_units,),
                                        initializer=bias_initializer)
        else:
            self.bias = None

    def get_initial_state(self, batch_size, dtype=None):
        """Zero state `{"h": [B, H]}` (RNN) or `{"h": [B, H], "c": [B, H]}` (LSTM)."""
        dtype = dtype or self.compute_dtype
        return {key: ops.zeros((batch_size, self.units), dtype=dtype) for key in self.state_keys}

    def _kernel_and_bias(self, dtype):
        kernel = ops.cast(self.recurrent_kernel, dtype)
        bias = ops.cast(self.bias, dtype) if self.bias is not None else None
        return kernel, bias

    def _cell(self, preactivation, state, kernel):
        z = preactivation + ops.matmul(state["h"], kernel)  # [batch, projection_units]
        if self.cell == "rnn":
            h = self.activation(z)
            return h, {"h": h}
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * state["c"] + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, {"h": h, "c": c}

    def call(self, input_projection, initial_state=None):
        dtype = input_projection.dtype
        kernel, bias = self._kernel_and_bias(dtype)
        if bias is not None:
            input_projection = input_projection + bias  # once for all steps, outside the loop
        if initial_state is None:
            initial_state = self.get_initial_state(ops.shape(input_projection)[0], dtype=dtype)
        initial_state = {key: ops.cast(initial_state[key], dtype) for key in self.state_keys}
        time_major = ops.transpose(input_projection, (1, 0, 2))  # [time, batch, projection_units]

        if keras.backend.backend() == "tensorflow":
            hidden = self._tf_scan(time_major, initial_state, kernel)  # [time, batch, units]
        else:
            def body(state, preactivation):
                _, new_state = self._cell(preactivation, state, kernel)
                # keras.ops.scan stacks outputs with the carry's structure: emit the whole state.
                return new_state, new_state

            _, states = ops.scan(body, initial_state, time_major)  # each [time, batch, units]
            hidden = states["h"]
        return ops.transpose(hidden, (1, 0, 2))  # [batch, time, units]

    def _tf_scan(self, time_major, initial_state, kernel):
        # keras.ops.scan on TensorFlow stacks every carry (c too) and sets no maximum_iterations,
        # which XLA (jit_compile=True) needs for the gradient; this loop stacks h only.
        import tensorflow as tf

        steps = tf.shape(time_major)[0]
        inputs = tf.TensorArray(time_major.dtype, size=steps, element_shape=time_major.shape[1:])
        inputs = inputs.unstack(time_major)
        outputs = tf.TensorArray(time_major.dtype, size=steps,
                                 element_shape=tf.TensorShape([time_major.shape[1], self.units]))
        keys = self.state_keys

        def body(t, outputs, *carry):
            h, new_state = self._cell(inputs.read(t), dict(zip(keys, carry)), kernel)
            return (t + 1, outputs.write(t, h)) + tuple(new_state[key] for key in keys)

        loop_vars = (tf.constant(0), outputs) + tuple(initial_state[key] for key in keys)
        # parallel_iterations=1: the recurrence is sequential anyway, and concurrent iterations trip
        # a Grappler bug (AddOpsRewrite temporaries colliding across iterations).
        _, outputs, *_ = tf.while_loop(lambda t, *_: t < steps, body, loop_vars,
                                       maximum_iterations=steps, parallel_iterations=1)
        return outputs.stack()

    def step(self, input_projection, state):
        """One time step: `input_projection [B, projection_units]`, state dict -> (h [B, H], new state)."""
        dtype = self.compute_dtype
        input_projection = ops.cast(input_projection, dtype)
        kernel, bias = self._kernel_and_bias(dtype)
        if bias is not None:
            input_projection = _bias_add(input_projection, bias)
        state = {key: ops.cast(state[key], dtype) for key in self.state_keys}
        return self._cell(input_projection, state, kernel)

    def compute_output_shape(self, input_projection_shape, initial_state_shape=None):
        return tuple(input_projection_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "cell": self.cell,
            "activation": self._activation_name,
            "use_bias": self.use_bias,
            "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
        })
        return config


# CaptionerBase.get_config's image-encoder settings; the video captioners, which build their own
# frame CNN from other arguments, drop them.
IMAGE_ENCODER_KEYS = ("encoder", "feature_dim", "encoder_weights", "encoder_trainable")


class CaptionerBase(keras.Model):
    """Shared plumbing of the captioners (`LRCNCaptioner`, `KarpathyMultimodalRNN`, `MaoMultimodalRNN`).

    Subclasses build their functional graph in `__init__` and call `_finish_init`. This base adds

    * the uniform visual-encoder configuration (`encoder`, `image_size`, `feature_dim`,
      `encoder_weights`, `encoder_trainable`) and the two model inputs
      `{"visual": [B, S, S, 3] images (0..255) or [B, F] features, "caption_in": int32 [B, T]}`;
    * the decoding-step API used by `vcaption.decoding`:
      `encode_visual(visual) -> context`, `initial_state(context) -> dict`, and
      `step(token_ids [B], state) -> (logits float32 [B, V], new_state)`;
    * `initialize_output_bias(word_counts)` (Karpathy & Fei-Fei 2015 §3.2).

    Subclasses implement `_visual_context(features)`, `initial_state` and `step`.
    """

    def _build_visual_input(self, encoder, image_size, feature_dim, encoder_weights,
                            encoder_trainable, dtype):
        from vcaption import encoders as encoders_lib# layers.py stays importable on its own

        visual, self.encoder, image_size = encoders_lib.visual_input_and_encoder(
            encoder, image_size, feature_dim, encoder_weights, encoder_trainable, dtype)
        caption_in = keras.Input(shape=(None,), dtype="int32", name="caption_in")
        self.repeat_per_caption = RepeatPerCaption(name="repeat_per_caption")
        return visual, caption_in, image_size

    def _encode_per_caption(self, visual, caption_in):
        """The encoder's features, one row per caption (see `RepeatPerCaption`). [captions, F]"""
        return self.repeat_per_caption(self.encoder(visual), caption_in)

    def _output_layers(self, vocab_size, dtype):
        self.output_projection = keras.layers.Dense(vocab_size, dtype=dtype, name="logits")
        # Logits leave the model in float32 whatever the compute dtype (mixed precision).
        self.output_cast = keras.layers.Activation("linear", dtype="float32", name="logits_float32")

    def _finish_init(self, visual, caption_in, logits, *, vocab_size, encoder, image_size,
                     feature_dim, encoder_weights, encoder_trainable, dropout, dtype, **kwargs):
        super().__init__(inputs={"visual": visual, "caption_in": caption_in}, outputs=logits,
                         **kwargs)
        self.vocab_size = int(vocab_size)
        self.encoder_name = encoder
        self.image_size = image_size if encoder != "features" else None
        self.feature_dim = feature_dim
        self.encoder_weights = encoder_weights
        self.encoder_trainable = bool(encoder_trainable)
        self.dropout = float(dropout)
        self._dtype_config = None
        if dtype is not None:
            # The model's own policy makes `compile` add loss scaling for mixed_float16.
            self.dtype_policy = keras.dtype_policies.get(dtype)
            self._dtype_config = keras.dtype_policies.serialize(self.dtype_policy)

    # --- decoding-step API ----------------------------------------------------------------
    def encode_visual(self, visual):
        """Runs the visual encoder (and any per-image projection) once per image -> context."""
        features = self.encoder(visual, training=False)  # [batch, F]
        return self._visual_context(features)

    def _visual_context(self, features):
        return features

    def initial_state_from_features(self, features):
        """Decoding state from *encoder outputs* `[B, F]`, skipping the CNN.

        For `encoder="features"` these are the precomputed features; for image encoders they
        are what `self.encoder(images)` returns. Equals
        `initial_state(encode_visual(visual))` with `features = encoder(visual)`; the export's
        `caption_features` signature serves it.
        """
        return self.initial_state(self._visual_context(features))

    def initial_state(self, context):
        raise NotImplementedError

    def step(self, token_ids, state):
        raise NotImplementedError

    def _logits(self, top):
        return ops.cast(self.output_projection(top), "float32")  # [batch, vocab]

    # --- training helpers -----------------------------------------------------------------
    def initialize_output_bias(self, word_counts, min_frequency: float = 1e-6):
        """Sets the softmax bias b_o to log word frequencies (Karpathy & Fei-Fei 2015 §3.2).

        Args:
            word_counts: `[vocab_size]` counts of each token id in the training captions
                (targets: words and `<end>`).
            min_frequency: floor on the frequency of tokens that never occur (e.g. `<pad>`).
        """
        bias = log_frequency_bias(word_counts, min_frequency)
        if bias.shape != (self.vocab_size,):
            raise ValueError(f"word_counts must have {self.vocab_size} entries, got {bias.shape}")
        self.output_projection.bias.assign(bias)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": self._dtype_config,
            "vocab_size": self.vocab_size,
            "encoder": self.encoder_name,
            "image_size": self.image_size,
            "feature_dim": self.feature_dim,
            "encoder_weights": self.encoder_weights,
            "encoder_trainable": self.encoder_trainable,
            "dropout": self.dropout,
        }

    @classmethod
    def from_config(cls, config):
        # A saved model carries its trained weights: do not fetch pretrained ones again on load
        # (offline that would fail), but keep reporting what the model was initialised from.
        weights = config.get("encoder_weights")
        model = cls(**{**config, "encoder_weights": None})
        model.encoder_weights = weights
        return model
