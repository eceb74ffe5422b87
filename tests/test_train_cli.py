"""`python -m vcaption.train --list-presets / --print-config`: every preset named, the config resolved."""

from __future__ import annotations

import json

from vcaption import presets, registry, train


def test_list_presets_names_every_preset_with_its_family_and_one_line(capsys):
    assert train.main(["--list-presets"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == presets.preset_names()
    assert len(lines) == len(presets.PRESETS) >= 16
    for line in lines:
        name, family, summary = line.split(maxsplit=2)
        assert registry.TASKS[presets.get_preset(name).task].startswith(f"vcaption.{family}.")
        assert summary and len(line) < 160


def test_print_config_shows_the_resolved_configuration_without_running(capsys, tmp_path):
    assert train.main(["--preset", "lrcn_2u", "--print-config", "--epochs", "3", "--data", str(tmp_path),
                       "--set", "model.hidden_units=32"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["name"] == "lrcn_2u" and config["train"]["epochs"] == 3
    assert config["model_args"]["hidden_units"] == 32 and config["data"]["data_dir"] == str(tmp_path)
    assert not (tmp_path / "metrics.json").exists()
