"""VQA presets: Antol et al. (ICCV 2015) "deeper LSTM Q + norm I" (`vcaption.models.vqa.VQAModel`)."""

from __future__ import annotations

from vcaption.config import ExperimentConfig, TrainConfig, preset


@preset
def vqa_lstm_cnn() -> ExperimentConfig:
    """Deeper LSTM Q + norm I on the built-in world: small_cnn image features (64x64, trained from
    scratch), ℓ2-normalised -> dense + tanh; 2-layer LSTM question encoder, [c1; h1; c2; h2] ->
    dense + tanh; element-wise product; 2-layer tanh MLP; softmax over the top K answers, trained on
    the VQA soft scores.

    Sizes for a 2-core CPU (the paper's, the `VQAModel` defaults, are one `--set` away:
    `--set model.embedding_dim=300 --set model.lstm_units=512 --set model.common_dim=1024
    --set model.hidden_units=1000 --set model.dropout=0.5`, with VGG-16 fc7 features:
    `--set model.encoder=vgg16 --set model.encoder_weights='imagenet' --set data.image_size=224`).

    Command: `python -m vcaption.train --preset vqa_lstm_cnn`.
    Result on the built-in data (6,000 images; test split, 2,405 questions; one run, 23.9 min wall
    on a heavily shared 2-core CPU), VQA accuracy %, overall / yes-no / number / other:
    model 61.3 / 72.3 / 84.5 / 35.3; question only 45.7 / 57.7 / 60.5 / 25.7 (1.34x);
    prior per question type 45.2 / 56.4 / 60.5 / 25.4. Counting is learned; naming the shape of a
    coloured object (and the colour of a named shape) stays near the prior after 8 epochs: the
    from-scratch CNN has not learned shape identity from answers alone. The 90% target is NOT
    reached. Neither lever tried helps enough: 16 epochs gave 59.6% (the cosine schedule keeps
    the rate high longer); a CNN pretrained to name every cell's shape, colour and size (99.7%
    shape accuracy by a linear read-out) gave 66.5%, "what shape is the <colour> object" still at
    31%: the product fusion and 2-layer MLP do not learn the look-up at these sizes.
    """
    return ExperimentConfig(
        name="vqa_lstm_cnn", model="VQAModel", task="vqa",
        task_args={"top_answers": 1000, "target": "soft", "baselines": True},
        model_args={"embedding_dim": 64, "lstm_units": 128, "lstm_layers": 2, "common_dim": 256,
                    "hidden_units": 256, "mlp_layers": 2, "dropout": 0.1, "encoder": "small_cnn",
                    "image_size": 64, "encoder_trainable": True},
        train=TrainConfig(epochs=8, batch_size=64, learning_rate=2e-3, checkpoint_every=400))
