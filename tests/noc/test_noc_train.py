"""`python -m vcaption.train --preset noc` end to end on a tiny NOC world (slow): every system
trains, metrics.json's F1 equals a recount from the run's results_test.json and the world's
scenes.json, and the export serves the NOC vocabulary."""

from __future__ import annotations

import json
import os

import pytest

from vcaption import config as config_lib
from vcaption import presets
from vcaption.noc import metrics
from vcaption.noc.task import load_contains
from vcaption.runtime import builtin_data
from vcaption.runtime.task import run_preset

TINY = ["data.shapes_images=200", "data.image_size=32", "model.image_size=32", "data.min_count=1",
        "train.epochs=1", "train.checkpoint_every=20",
        "model.hidden_units=16", "model.embedding_dim=8", "model.image_embedding_dim=8",
        "task.lrcn_args={'hidden_units': 16, 'embedding_dim': 8}", "export.serving_config="]


@pytest.mark.slow
def test_noc_preset_trains_every_system_and_reports_a_recountable_f1(tmp_path):
    cfg = config_lib.apply_overrides(presets.get_preset("noc"), [
        *TINY, f"data.shapes_root={tmp_path / 'data'}", f"export.saved_models_dir={tmp_path / 'saved_models'}"])
    result = run_preset(cfg, str(tmp_path / "run"), verbose=0)
    assert set(result["training"]) == {"noc", "paired_only", "pretrain_finetune", "lrcn_2f"}
    assert set(result["noc"]["baselines"]) == {"paired_only", "pretrain_finetune", "lrcn_2f"}
    contains, held_out = load_contains(builtin_data.scenes_path(cfg.data))
    assert result["noc"]["held_out"] == held_out == ["star", "hexagon"]
    for name, path in (("noc", "results_test.json"), ("paired_only", "results_test_paired_only.json")):
        with open(tmp_path / "run" / path) as f:
            candidates = {str(r["image_id"]): r["caption"] for r in json.load(f)}
        block = result["noc"] if name == "noc" else result["noc"]["baselines"][name]
        assert block["f1"] == metrics.noc_block(candidates, contains, held_out)["f1"]
    with open(os.path.join(result["export"], "assets", "vocab.txt")) as f:
        assert {"star", "hexagon"} <= set(f.read().split())
