"""VQA presets: Antol et al. (ICCV 2015) "deeper LSTM Q + norm I" (`vcaption.models.vqa.VQAModel`)."""

from __future__ import annotations

from vcaption.config import DataConfig, ExperimentConfig, TrainConfig, preset


@preset
def vqa_lstm_cnn() -> ExperimentConfig:
    """Deeper LSTM Q + norm I on the built-in world: CNN image features, ℓ2-normalised -> dense +
    tanh; word embedding + tanh, 2-layer LSTM, [c1; h1; c2; h2] -> dense + tanh; element-wise
    product; 2-layer tanh MLP; softmax over the top K answers, trained on the VQA soft scores
    (Antol et al. §5).

    The image features come, as in the paper, from a CNN trained on another task: the paper uses
    VGG-16 trained on ImageNet; the built-in world has no ImageNet, so the `small_cnn` of an
    `lrcn_2f` captioner trained on the same world's training captions plays that part
    (`task.encoder_from`; it is trained first, inside the run, and fine-tuned here). From scratch,
    the CNN learns too little from answers alone (61% overall, "what shape is the <colour> object"
    near the prior). The world has 18,000 images (57,452 training questions): with 6,000 the
    model overfits at ~80%.

    Sizes for a 2-core CPU. The paper's (the `VQAModel` defaults) are one `--set` away:
    `--set model.embedding_dim=300 --set model.lstm_units=512 --set model.common_dim=1024
    --set model.hidden_units=1000`; with them the model reached the same validation accuracy
    (87.0%) at twice the step time, and the question-only baseline diverged at this learning rate
    (validation 45% -> 21%): lower `train.learning_rate` with them.
    Real data, as in the paper, with VGG-16 fc7 features: `--data DIR --set task.encoder_from=none
    --set model.encoder=vgg16 --set model.encoder_weights='imagenet' --set data.image_size=224
    --set model.image_size=224 --set model.dropout=0.5`.

    Command: `python -m vcaption.train --preset vqa_lstm_cnn`.
    Result on the built-in data: see README ("Visual question answering").
    """
    return ExperimentConfig(
        name="vqa_lstm_cnn", model="VQAModel", task="vqa",
        task_args={"top_answers": 1000, "target": "soft", "baselines": True,
                   "encoder_from": "lrcn_2f"},
        model_args={"embedding_dim": 64, "lstm_units": 128, "lstm_layers": 2, "common_dim": 256,
                    "hidden_units": 256, "mlp_layers": 2, "dropout": 0.1, "encoder": "small_cnn",
                    "image_size": 64, "encoder_trainable": True},
        data=DataConfig(shapes_root="data/shapes18k", shapes_images=18000, image_size=64),
        train=TrainConfig(epochs=8, batch_size=64, learning_rate=2e-3, checkpoint_every=400))
