"""Caption losses: cross-entropy over occupied time steps only, and perplexity."""

from __future__ import annotations

import keras
from keras import ops

PAD_ID = 0


def _masked_token_losses(targets, logits, pad_id=PAD_ID):
    targets = ops.cast(targets, "int32")  # [batch, time]
    logits = ops.cast(logits, "float32")  # [batch, time, vocab]
    mask = ops.cast(ops.not_equal(targets, pad_id), "float32")  # [batch, time]
    # Pads point at a valid class so that the gather is defined; the mask removes them.
    safe_targets = ops.where(mask > 0, targets, ops.zeros_like(targets))
    losses = keras.losses.sparse_categorical_crossentropy(
        safe_targets, logits, from_logits=True)  # [batch, time]
    return losses * mask, mask


def masked_caption_loss(targets, logits, pad_id: int = PAD_ID):
    """Mean cross-entropy over occupied time steps (targets != pad) of the whole batch.

    Args:
        targets: int `[batch, time]`, `caption_in` shifted left (w1 ... wn <end>, padded with 0).
        logits: float `[batch, time, vocab]`.
        pad_id: the padding id (0).

    Returns:
        Scalar float32: Σ_{b,t: y≠pad} -log p(y_bt) / #{b,t: y≠pad}. Padded steps contribute
        neither loss nor gradient.
    """
    losses, mask = _masked_token_losses(targets, logits, pad_id)
    return ops.sum(losses) / ops.maximum(ops.sum(mask), 1.0)


def perplexity(targets, logits, pad_id: int = PAD_ID):
    """Per-word perplexity exp(mean per-token negative log-likelihood) over occupied steps."""
    return ops.exp(masked_caption_loss(targets, logits, pad_id))


@keras.saving.register_keras_serializable(package="vcaption")
class MaskedCaptionLoss(keras.losses.Loss):
    """`masked_caption_loss` as a Keras loss for `model.compile(loss=MaskedCaptionLoss())`.

    The value is the token-level mean over the batch's occupied steps (not a mean of
    per-caption means), so it is reduced inside `call`; `sample_weight` is not supported.

    Args:
        pad_id: the padding id (0).
        name: loss name.

    Example:
    ```python
    model.compile(optimizer="adam", loss=MaskedCaptionLoss())
    model.fit({"visual": v, "caption_in": caption_in}, caption_out)
    ```
    """

    def __init__(self, pad_id: int = PAD_ID, name="masked_caption_loss", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        self.pad_id = int(pad_id)

    def call(self, y_true, y_pred):
        return masked_caption_loss(y_true, y_pred, self.pad_id)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        config["pad_id"] = self.pad_id
        return config


@keras.saving.register_keras_serializable(package="vcaption")
class MaskedPerplexity(keras.metrics.Metric):
    """Running per-word perplexity over occupied time steps (token-weighted across batches)."""

    def __init__(self, pad_id: int = PAD_ID, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pad_id = int(pad_id)
        self.total_nll = self.add_variable(shape=(), initializer="zeros", name="total_nll")
        self.total_tokens = self.add_variable(shape=(), initializer="zeros", name="total_tokens")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses, mask = _masked_token_losses(y_true, y_pred, self.pad_id)
        self.total_nll.assign_add(ops.sum(losses))
        self.total_tokens.assign_add(ops.sum(mask))

    def result(self):
        return ops.exp(self.total_nll / ops.maximum(self.total_tokens, 1.0))

    def get_config(self):
        config = super().get_config()
        config["pad_id"] = self.pad_id
        return config
