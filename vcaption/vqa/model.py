"""VQA model: Antol et al. (ICCV 2015) "deeper LSTM Q + norm I", and its question-only baseline."""

from __future__ import annotations

import keras

from vcaption import encoders as encoders_lib


@keras.saving.register_keras_serializable(package="vcaption")
class L2Normalize(keras.layers.Layer):
    """√F · x / ||x||_2 along the last axis ("norm I": the image features are ℓ2-normalised).

    The constant √F gives the normalised entries unit scale: without it a 256-d (4096-d in the
    paper) unit vector has entries ~1/√F, f_I starts near 0 and so does the product f_I ⊙ f_Q,
    which slows training. The dense layer that follows could learn any constant factor itself, so
    this changes the starting point, not the model: it is W_I initialised √F times larger.
    """

    def call(self, x):
        dim = keras.ops.cast(keras.ops.shape(x)[-1], x.dtype)
        return keras.ops.normalize(x, axis=-1, order=2) * keras.ops.sqrt(dim)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="vcaption")
class VQAModel(keras.Model):
    """CNN image features × LSTM question encoding -> softmax over the K most frequent answers.

    Antol et al., "VQA: Visual Question Answering" (ICCV 2015) §5, "deeper LSTM Q + norm I":

    * image: the CNN's features (VGG fc7 in the paper) are ℓ2-normalised and projected to the
      common space by a dense layer with tanh: f_I = tanh(W_I · v / ||v||) (`L2Normalize`);
    * question: each word is embedded by a fully connected layer with tanh (an embedding lookup
      followed by tanh: a dense layer on a one-hot vector), then a 2-layer LSTM reads the words;
      the final cell and hidden states of both layers, [c_1; h_1; c_2; h_2] (2 × 2 × 512 = 2048
      in the paper), are projected by a dense layer with tanh: f_Q = tanh(W_Q · [c; h]);
    * fusion: the element-wise product f_I ⊙ f_Q (1024-d in the paper);
    * classifier: a multi-layer perceptron (2 hidden layers of 1000 tanh units, dropout 0.5)
      and a softmax over the K = 1000 most frequent training answers.

    The model returns the K logits (float32); the softmax lives in the loss (`SoftTargetLoss`) and
    in the export. `image=False` builds the question-only ("blind", §5 "LSTM Q") baseline: the
    same question path and classifier without the image (f_Q feeds the MLP directly).

    Paper sizes are the constructor defaults; the built-in preset (`vqa_lstm_cnn`) uses smaller
    ones so that it trains on a 2-core CPU.

    Args:
        vocab_size: question vocabulary size V (reserved tokens included, `<pad>` = 0 is masked).
        num_answers: K, the answer vocabulary size (lines of answers.txt).
        embedding_dim: word embedding size (paper: 300).
        lstm_units: units of each LSTM layer (paper: 512).
        lstm_layers: stacked LSTM layers (paper: 2).
        common_dim: size of f_I and f_Q (paper: 1024).
        hidden_units: width of each MLP hidden layer (paper: 1000).
        mlp_layers: MLP hidden layers (paper: 2).
        dropout: rate before each MLP layer (paper: 0.5).
        image: False builds the question-only baseline.
        encoder: visual encoder name (`vcaption.encoders.build_encoder`); "features" reads
            precomputed vectors (paper: VGG-16 fc7, feature_dim 4096).
        image_size: image side S for image encoders.
        feature_dim: F for `encoder="features"`.
        encoder_weights: None or "imagenet" for `keras.applications` backbones.
        encoder_trainable: fine-tune the CNN (the paper keeps VGG frozen).
        dtype: dtype policy; logits are always float32.

    Example:
    ```python
    model = VQAModel(vocab_size=12000, num_answers=1000, encoder="features", feature_dim=4096)
    logits = model({"visual": fc7, "question": question_ids})  # [batch, 1000]
    ```

    Reference: Antol et al., ICCV 2015, §5 and Fig. 8 ("deeper LSTM Q + norm I").
    """

    def __init__(self, vocab_size, num_answers, embedding_dim=300, lstm_units=512, lstm_layers=2,
                 common_dim=1024, hidden_units=1000, mlp_layers=2, dropout=0.5, image=True,
                 encoder="features", image_size=None, feature_dim=4096, encoder_weights=None,
                 encoder_trainable=False, dtype=None, **kwargs):
        # === Question path ===
        question = keras.Input(shape=(None,), dtype="int32", name="question")
        x = keras.layers.Embedding(vocab_size, embedding_dim, mask_zero=True, dtype=dtype,
                                   name="word_embedding")(question)  # [batch, words, E]
        x = keras.layers.Activation("tanh", dtype=dtype, name="word_tanh")(x)
        states = []
        for index in range(lstm_layers):
            last = index + 1 == lstm_layers
            outputs = keras.layers.LSTM(lstm_units, return_sequences=not last, return_state=True,
                                        dtype=dtype, name=f"lstm_{index + 1}")(x)
            x, h, c = outputs  # x: [batch, words, U] (or [batch, U] on the last layer)
            states += [c, h]
        q = keras.layers.Concatenate(name="lstm_states")(states)  # [batch, 2 * layers * U]
        q = keras.layers.Dense(common_dim, activation="tanh", dtype=dtype,
                               name="question_embedding")(q)  # f_Q [batch, D]

        # === Image path and fusion ===
        inputs = {"question": question}
        if image:
            visual, self.encoder, image_size = encoders_lib.visual_input_and_encoder(
                encoder, image_size, feature_dim, encoder_weights, encoder_trainable, dtype)
            inputs["visual"] = visual
            v = L2Normalize(name="l2_normalize")(self.encoder(visual))  # √F v / ||v|| [batch, F]
            v = keras.layers.Dense(common_dim, activation="tanh", dtype=dtype,
                                   name="image_embedding")(v)  # f_I [batch, D]
            fused = keras.layers.Multiply(name="fusion")([v, q])  # f_I ⊙ f_Q [batch, D]
        else:
            self.encoder = None
            fused = q

        # === Classifier ===
        y = fused
        for index in range(mlp_layers):
            y = keras.layers.Dropout(dropout, name=f"dropout_{index + 1}")(y)
            y = keras.layers.Dense(hidden_units, activation="tanh", dtype=dtype,
                                   name=f"hidden_{index + 1}")(y)  # [batch, hidden]
        y = keras.layers.Dropout(dropout, name="dropout_logits")(y)
        logits = keras.layers.Dense(num_answers, dtype=dtype, name="answer_logits")(y)
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.vocab_size = int(vocab_size)
        self.num_answers = int(num_answers)
        self.embedding_dim = int(embedding_dim)
        self.lstm_units = int(lstm_units)
        self.lstm_layers = int(lstm_layers)
        self.common_dim = int(common_dim)
        self.hidden_units = int(hidden_units)
        self.mlp_layers = int(mlp_layers)
        self.dropout = float(dropout)
        self.image = bool(image)
        self.encoder_name = encoder
        self.image_size = image_size if (image and encoder != "features") else None
        self.feature_dim = feature_dim
        self.encoder_weights = encoder_weights
        self.encoder_trainable = bool(encoder_trainable)
        self._dtype_config = (keras.dtype_policies.serialize(keras.dtype_policies.get(dtype))
                              if dtype else None)

    def get_config(self):
        return {
            "name": self.name, "trainable": self.trainable,
            "vocab_size": self.vocab_size, "num_answers": self.num_answers,
            "embedding_dim": self.embedding_dim, "lstm_units": self.lstm_units,
            "lstm_layers": self.lstm_layers, "common_dim": self.common_dim,
            "hidden_units": self.hidden_units, "mlp_layers": self.mlp_layers,
            "dropout": self.dropout, "image": self.image, "encoder": self.encoder_name,
            "image_size": self.image_size, "feature_dim": self.feature_dim,
            "encoder_weights": self.encoder_weights, "encoder_trainable": self.encoder_trainable,
            "dtype": self._dtype_config,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="vcaption")
class SoftTargetLoss(keras.losses.Loss):
    """Softmax cross-entropy against the VQA soft scores, or against the most common answer.

    `targets` are the K soft scores s_k = acc(answer k) of a question (`vcaption.data`, task
    "vqa"). `"soft"`: the target distribution is s / Σ_k s_k, so answers that fewer humans gave
    get proportionally less mass; `"most_common"`: one-hot on the best-scoring answer (the
    paper's training target). A question none of whose answers is in the top K (all s_k = 0)
    contributes zero loss.

    Args:
        target: "soft" or "most_common".
    """

    def __init__(self, target: str = "soft", name: str = "soft_target_loss", **kwargs):
        if target not in ("soft", "most_common"):
            raise ValueError(f"target must be 'soft' or 'most_common', got {target!r}")
        super().__init__(name=name, **kwargs)
        self.target = target

    def call(self, scores, logits):
        ops = keras.ops
        scores = ops.cast(scores, "float32")
        total = ops.sum(scores, axis=-1, keepdims=True)  # [batch, 1]
        if self.target == "most_common":
            best = ops.one_hot(ops.argmax(scores, axis=-1), ops.shape(scores)[-1])
            distribution = best * ops.cast(total > 0, "float32")
        else:
            distribution = scores / ops.maximum(total, 1e-8)  # [batch, K]
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        return -ops.sum(distribution * log_probs, axis=-1)  # [batch]

    def get_config(self):
        return {**super().get_config(), "target": self.target}


@keras.saving.register_keras_serializable(package="vcaption")
def vqa_accuracy(scores, logits):
    """The VQA accuracy of the argmax answer: the answers' soft scores *are* its lenient accuracy
    (`vcaption.metrics.vqa.soft_scores`) and the argmax is always in the top K. That is the
    official accuracy except on questions whose humans all typed one answer not in normal form
    ("Two" ten times), where the official rule compares strings as typed."""
    ops = keras.ops
    best = ops.argmax(logits, axis=-1)  # [batch]
    return ops.sum(ops.cast(scores, "float32") * ops.one_hot(best, ops.shape(scores)[-1]), axis=-1)
