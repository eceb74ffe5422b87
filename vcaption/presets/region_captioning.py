"""Region-level captioning preset (Karpathy & Fei-Fei §4.3, Table 4), sized for a 2-core CPU."""

from __future__ import annotations

from vcaption.config import DataConfig, ExperimentConfig, TrainConfig, preset
from vcaption.presets.captioning import lrcn_2f


@preset
def karpathy_region_captioning() -> ExperimentConfig:
    """Full-frame vs region-level captioner on the region annotations of the built-in world.

    Command: `python -m vcaption.train --preset karpathy_region_captioning --output
    runs/region_captioning [--set task.ranker=runs/karpathy_ranker]`. The region-level model is
    trained on snippets that the ranker's alignment (Viterbi, β chosen on val) assigns to region
    crops; the full-frame model on whole images and sentences; both on lrcn_2f (the Karpathy
    multimodal RNN trains worse on this CPU budget, docs/captioning_table.md).
    Result (one run, 8 min on a shared 2-core CPU, the 10k world's ranker), 1,091 annotated test
    regions, beam 3: region-level BLEU-1..4 0.981 / 0.922 / 0.848 / 0.785, METEOR 0.559, CIDEr-D
    4.632; full-frame 0.194 / 0.131 / 0.085 / 0.038, METEOR 0.225, CIDEr-D 0.136. BLEU-4 rests on
    few 4-grams (see README, "Region-level captioning (Table 4)").
    """
    captioner = lrcn_2f()
    return ExperimentConfig(
        name="karpathy_region_captioning", model=captioner.model, model_args=captioner.model_args,
        task="region_caption",
        task_args={"ranker": None, "train_images": 2000, "val_images": 200, "test_images": 500,
                   "crop_size": 32, "context": 8, "full_frame_steps": 800, "region_steps": 800},
        # The ranker's world and records (karpathy_ranker), so that a trained ranker is reused.
        data=DataConfig(shapes_root="data/shapes10k", shapes_images=10000, image_size=64),
        train=TrainConfig(batch_size=64, checkpoint_every=200, baselines=False))
