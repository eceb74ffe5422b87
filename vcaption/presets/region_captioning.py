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


@preset
def karpathy_vg_regions() -> ExperimentConfig:
    """Full-frame vs region-level captioner on merged Visual Genome test regions (Table 5).

    Command: `python -m vcaption.train --preset karpathy_vg_regions --output runs/vg_regions`.
    The world's objects each have their own Visual Genome box and phrase plus 4 simulated workers'
    (`data.shapes_region_annotators`); the region model trains on the raw regions of 1,500 train
    images (vocabulary: words seen >= 15 times), the full-frame model on the world's whole images
    and sentences, 800 steps each; both caption the test regions merged at IoU >= 0.7
    (`task.merge_iou`), each scored against all its phrases.
    Result (one run, 32 min wall on a 2-core CPU at load ~20, 7.6 min of CPU, world made on first
    use): 3,455 test boxes of 300 images merged into 952 regions (3.63 phrases each), beam 3:
    METEOR region-level 0.510 vs full-frame 0.210 (paper: 0.272 vs 0.209); BLEU-1..4 0.779 / 0.741
    / 0.740 / 0.580 vs 0.195 / 0.121 / 0.070 / 0.035, ROUGE-L 0.827 vs 0.299, CIDEr-D 3.209 vs
    0.155. README, "Region captioning with strong supervision (Table 5)".
    """
    captioner = lrcn_2f()
    return ExperimentConfig(
        name="karpathy_vg_regions", model=captioner.model, model_args=captioner.model_args,
        task="vg_region_caption",
        task_args={"merge_iou": 0.7, "min_word_count": 15, "train_images": 1500, "val_images": 100,
                   "test_images": 300, "crop_size": 32, "context": 8, "full_frame_steps": 800,
                   "region_steps": 800},
        data=DataConfig(shapes_root="data/shapes4k", shapes_images=4000, shapes_region_annotators=4,
                        image_size=64),
        train=TrainConfig(batch_size=64, checkpoint_every=200, baselines=False))
