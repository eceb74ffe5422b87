"""Multi-label classifier of what is where in an image: the pretraining task of image encoders.

Antol et al. (and the captioning papers) take their image features from a CNN trained on another
task: VGG-16 trained to classify ImageNet objects. The built-in world has no ImageNet; this model
is its stand-in, trained on the world's Visual Genome region descriptions (`vcaption.objects.task`).
"""

from __future__ import annotations

import keras

from vcaption import encoders as encoders_lib


@keras.saving.register_keras_serializable(package="vcaption")
class ObjectClassifier(keras.Model):
    """Image -> one independent logit per label ("small red circle", "small red circle @ top left").

    A visual encoder (`vcaption.encoders`) followed by one dense layer of `num_labels` logits,
    trained with a sigmoid cross-entropy per label (`keras.losses.BinaryCrossentropy(from_logits=
    True)`): several labels are true at once, as in multi-label object classification.

    The labels (`vcaption.objects.labels.LabelVocabulary`) name each region phrase and its endings
    ("red circle", "circle") anywhere in the image and in each cell of a 3x3 grid. Both matter for
    what the encoder learns: a logit is a linear function of the features, so the features must
    hold each *conjunction* ("red" *and* "circle", at a place) on its own — which a VQA model with
    element-wise product fusion can read out, unlike the factored colour / shape / place codes a
    captioner's LSTM can combine itself.

    Args:
        num_labels: L, the number of labels.
        encoder: visual encoder name (`vcaption.encoders.build_encoder`).
        image_size: image side S.
        encoder_weights: None or "imagenet" for `keras.applications` backbones.
        dtype: dtype policy; logits are always float32.

    Example:
    ```python
    model = ObjectClassifier(num_labels=480, encoder="small_cnn", image_size=64)
    logits = model(images)  # [batch, 480]
    ```
    """

    def __init__(self, num_labels, encoder="small_cnn", image_size=None, encoder_weights=None,
                 dtype=None, **kwargs):
        if encoder not in encoders_lib.IMAGE_ENCODERS:
            raise ValueError(f"ObjectClassifier needs an image encoder {encoders_lib.IMAGE_ENCODERS}, "
                             f"got {encoder!r}")
        visual, self.encoder, image_size = encoders_lib.visual_input_and_encoder(
            encoder, image_size, None, encoder_weights, True, dtype)
        logits = keras.layers.Dense(num_labels, dtype=dtype, name="label_logits")(
            self.encoder(visual))  # [batch, L]
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(logits)
        super().__init__(inputs=visual, outputs=logits, **kwargs)
        self.num_labels = int(num_labels)
        self.encoder_name = encoder
        self.image_size = image_size
        self.encoder_weights = encoder_weights
        self._dtype_config = (keras.dtype_policies.serialize(keras.dtype_policies.get(dtype))
                              if dtype else None)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_labels": self.num_labels,
                "encoder": self.encoder_name, "image_size": self.image_size,
                "encoder_weights": self.encoder_weights,
                "dtype": self._dtype_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
