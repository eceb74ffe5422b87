"""One command-line style (vcaption.cli): kebab-case flags, one name per concept, deprecated
aliases that warn and still work, defaults in every --help, --verbose everywhere."""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from vcaption import cli

REPO = pathlib.Path(__file__).resolve().parents[1]

BENCHMARKS = ["preprocess", "decode", "train", "batch_caption", "serving", "regions"]
# Every `python -m` entry point of this change, as a user types it.
ENTRY_POINTS = [
    "beam_jobs.preprocess", "beam_jobs.extract_features", "beam_jobs.batch_caption",
    "vcaption.serving.client", "vcaption.serving.loadtest", "vcaption.serving.devserver",
    "vcaption.serving.config", "vcaption.bench", *[f"vcaption.bench {name}" for name in BENCHMARKS],
    "vcaption.datasets.shapes", "vcaption.compare", "vcaption.evaluate", "vcaption.caption",
]


def parsers() -> dict[str, argparse.ArgumentParser]:
    """The parser of every entry point that builds one in a function (shapes builds it in main)."""
    import importlib

    modules = {"beam_jobs.preprocess": "beam_jobs.preprocess",
               "beam_jobs.extract_features": "beam_jobs.extract_features",
               "beam_jobs.batch_caption": "beam_jobs.batch_caption",
               "vcaption.serving.client": "vcaption.serving.client",
               "vcaption.serving.loadtest": "vcaption.serving.loadtest",
               "vcaption.serving.devserver": "vcaption.serving.devserver",
               "vcaption.serving.config": "vcaption.serving.config",
               **{f"vcaption.bench {name}": f"vcaption.bench.{name}" for name in BENCHMARKS},
               "vcaption.compare": "vcaption.compare", "vcaption.evaluate": "vcaption.evaluate",
               "vcaption.caption": "vcaption.caption"}
    return {name: importlib.import_module(module).build_parser() for name, module in modules.items()}


@pytest.fixture(scope="module")
def all_parsers():
    return parsers()


def _help(entry_point: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *entry_point.split(), "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=600)


def test_every_entry_point_help_exits_0_and_shows_defaults():
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(ENTRY_POINTS, pool.map(_help, ENTRY_POINTS)))
    for entry_point, completed in done.items():
        assert completed.returncode == 0, (entry_point, completed.stderr[-2000:])
        assert completed.stdout.startswith(f"usage: python -m {entry_point}"), entry_point
        assert "Traceback" not in completed.stderr, entry_point
        if entry_point != "vcaption.bench":
            assert "(default: " in completed.stdout and "--verbose" in completed.stdout, entry_point
    assert all(f"  {name} " in done["vcaption.bench"].stdout for name in BENCHMARKS)
    preprocess_help = done["beam_jobs.preprocess"].stdout
    assert "--image-size IMAGE_SIZE" in preprocess_help and "(default: 256)" in preprocess_help
    client_help = done["vcaption.serving.client"].stdout
    # Deprecated spellings are named in the help of their flag, not offered as flags.
    assert "--model-name MODEL_NAME" in client_help and "[deprecated: --model]" in client_help
    assert "--model MODEL" not in client_help and "--batch_size BATCH_SIZE" not in client_help


def test_flags_are_kebab_case_documented_and_verbose_everywhere(all_parsers):
    from vcaption.serving import protos

    for name, parser in all_parsers.items():
        flags = cli.public_flags(parser)
        assert "--verbose" in flags, name
        assert parser.allow_abbrev is False, name
        for action in parser._actions:
            assert action.help, (name, action.option_strings or action.dest)  # so --help shows defaults
        if name == "vcaption.serving.devserver":
            # TF Serving's own flag names, on purpose (see the comment in devserver.build_parser).
            own = {"models_dir", "host", "max_request_bytes", "max_string_elements", "verbose",
                   "help"}
            assert {f[2:] for f in flags} <= protos.MODEL_SERVER_FLAGS | own
            assert not cli.deprecated_flags(parser)
            continue
        for flag in flags:
            assert re.fullmatch(r"--[a-z0-9]+(-[a-z0-9]+)*", flag), (name, flag)


def test_one_name_per_concept(all_parsers):
    for name, parser in all_parsers.items():
        flags = set(cli.public_flags(parser))
        # A batch size is --batch-size (RunInference's lower bound is --min-batch-size).
        assert {f for f in flags if "batch" in f and "batching" not in f} <= {"--batch-size",
                                                                               "--min-batch-size"}, name
        assert not flags & {"--out", "--output-dir", "--images-dir", "--export-dir", "--batch", "--videos",
                            "--frames", "--max-batch-size"}, name
        actions = {s: a for a in parser._actions for s in a.option_strings}
        # --images is image files (directory / pattern), never a count: counts are --num-*.
        if "--images" in flags:
            assert actions["--images"].type is None, name
        for flag in flags:
            if actions[flag].type is int and re.search(r"images|videos|frames", flag):
                assert flag.startswith(("--num-", "--max-")), (name, flag)
    # A served model's name is --model-name; --model is a model file or a SavedModel directory.
    for name in ("vcaption.serving.client", "vcaption.serving.loadtest"):
        assert "--model-name" in cli.public_flags(all_parsers[name])
        assert cli.deprecated_flags(all_parsers[name])["--model"] == "--model-name"
    for name in ("beam_jobs.extract_features", "beam_jobs.batch_caption", "vcaption.bench decode",
                 "vcaption.bench batch_caption", "vcaption.bench serving", "vcaption.evaluate",
                 "vcaption.caption"):
        flags = cli.public_flags(all_parsers[name])
        assert "--model" in flags and "--model-name" not in flags, name
    assert "--batch-size" in cli.public_flags(all_parsers["vcaption.serving.client"])
    assert "--num-images" in cli.public_flags(all_parsers["vcaption.bench preprocess"])


# (entry point, the other arguments it needs, old spelling, new spelling, value, dest, parsed value)
ALIASES = [
    ("vcaption.serving.client", ["--server", "h:1", "a.jpg"], "--model", "--model-name", "m", "model_name",
     "m"),
    ("vcaption.serving.client", ["--server", "h:1", "--model-name", "m", "a.jpg"], "--batch_size",
     "--batch-size", "4", "batch_size", 4),
    ("vcaption.serving.client", ["--server", "h:1", "--model-name", "m", "a.jpg"], "--image_input",
     "--image-input", "x", "image_input", "x"),
    ("vcaption.serving.loadtest", ["--server", "h:1"], "--model", "--model-name", "m", "model_name", "m"),
    ("vcaption.serving.loadtest", ["--server", "h:1", "--model-name", "m"], "--batch", "--batch-size", "4",
     "batch_size", 4),
    ("vcaption.serving.loadtest", ["--server", "h:1", "--model-name", "m"], "--image_input", "--image-input",
     "x", "image_input", "x"),
    ("vcaption.bench preprocess", [], "--images", "--num-images", "12", "num_images", 12),
    ("vcaption.bench preprocess", [], "--data", "--input", "d", "input", "d"),
    ("vcaption.bench batch_caption", [], "--images-dir", "--images", "d", "images", "d"),
    ("vcaption.bench batch_caption", [], "--max-batch-size", "--batch-size", "4", "batch_size", 4),
    ("vcaption.bench decode", [], "--batch", "--batch-size", "4", "batch_size", 4),
    ("vcaption.bench decode", [], "--run", "--model", "runs/x", "model", "runs/x"),
    ("vcaption.bench train", [], "--batch", "--batch-size", "4", "batch_size", 4),
    ("vcaption.bench regions", [], "--batch", "--batch-size", "4", "batch_size", 4),
    ("vcaption.bench serving", [], "--export_dir", "--model", "m", "model", "m"),
    ("vcaption.bench serving", [], "--batching_parameters_file", "--batching-parameters-file", "b.txt",
     "batching_parameters_file", "b.txt"),
]


@pytest.mark.parametrize("entry_point, others, old, new, value, dest, parsed", ALIASES,
                         ids=[f"{a[0]} {a[2]}" for a in ALIASES])
def test_a_deprecated_alias_warns_in_one_line_and_still_works(all_parsers, capsys, entry_point, others, old,
                                                              new, value, dest, parsed):
    parser = all_parsers[entry_point]
    assert cli.deprecated_flags(parser)[old] == new
    current = parser.parse_args([*others, new, value])
    assert capsys.readouterr().err == ""
    deprecated = parser.parse_args([*others, f"{old}={value}"])
    assert getattr(deprecated, dest) == getattr(current, dest) == parsed
    assert capsys.readouterr().err == f"warning: {old} is deprecated; use {new}\n"


def test_bench_batch_caption_images_is_files_and_a_bare_count_is_the_old_spelling(all_parsers, capsys,
                                                                                   tmp_path):
    parser = all_parsers["vcaption.bench batch_caption"]
    args = parser.parse_args(["--images", str(tmp_path)])
    assert args.images == str(tmp_path) and args.num_images == 2000 and capsys.readouterr().err == ""
    args = parser.parse_args(["--images", "300"])
    assert args.images is None and args.num_images == 300
    assert capsys.readouterr().err == "warning: --images N (a count) is deprecated; use --num-images N\n"


def test_loadtest_images_are_files_directories_or_patterns(tmp_path):
    from vcaption.serving import loadtest

    for name in ("b.jpg", "a.jpg", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    files = loadtest.image_files([str(tmp_path), str(tmp_path / "*.png"), str(tmp_path / "b.jpg")])
    assert files == [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.png", "c.png", "b.jpg")]
    with pytest.raises(SystemExit, match="no files"):
        loadtest.image_files([str(tmp_path / "*.gif")])


def test_shapes_new_flags_and_old_spellings(tmp_path, capsys):
    from vcaption.datasets import shapes

    shapes.main(["--output", str(tmp_path / "new"), "--num-images", "3", "--num-videos", "0",
                 "--num-frames", "16", "--image-size", "32"])
    assert capsys.readouterr().err == ""
    shapes.main(["--out", str(tmp_path / "old"), "--images", "3", "--videos", "0", "--frames", "16",
                 "--image-size", "32"])
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {old} is deprecated; use {new}" for old, new in
                   [("--out", "--output"), ("--images", "--num-images"), ("--videos", "--num-videos"),
                    ("--frames", "--num-frames")]]
    for name in ("dataset_shapes.json", "scenes.json"):
        assert (tmp_path / "new" / name).read_bytes() == (tmp_path / "old" / name).read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        shapes.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--num-images NUM_IMAGES" in text and "(default: 2000)" in text and "--out " not in text


def test_evaluate_takes_a_run_directory_and_hands_other_tasks_their_options(tmp_path, capsys, monkeypatch):
    from vcaption import evaluate

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # --verbose below unsets it; restored after

    run = tmp_path / "run"
    run.mkdir()
    assert evaluate.model_paths(str(run)) == (str(run / "model.keras"), str(run / "blind.keras"))
    assert evaluate.model_paths("a/model.keras") == ("a/model.keras", "a/blind.keras")
    scores = np.full((2, 10), -1.0)
    for i in range(2):
        scores[i, 5 * i:5 * i + 5] = 1.0  # each image ranks its own 5 sentences first
    np.save(tmp_path / "s.npy", scores)
    out = tmp_path / "m.json"
    assert evaluate.main(["--task", "retrieval", "--scores", str(tmp_path / "s.npy"), "--verbose",
                          "--output", str(out)]) == 0
    assert json.loads(out.read_text())
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--model", "m.keras"])  # --data is needed too
    assert exit_info.value.code == 2 and "--data" in capsys.readouterr().err


def test_verbose_is_on_the_command_line_of_every_command_and_configures_logging(all_parsers):
    """vcaption/__init__.py keys TensorFlow's C++ logs on the literal --verbose: every parser takes it
    as a plain flag (no value, no abbreviation)."""
    for name, parser in all_parsers.items():
        action = next(a for a in parser._actions if "--verbose" in a.option_strings)
        assert action.nargs == 0 and action.default is False, name


def test_the_library_never_imports_the_beam_jobs():
    """vcaption/ must not import beam_jobs (an import cycle): the benchmarks and the built-in data
    run the jobs as commands."""
    for path in (REPO / "vcaption").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "beam_jobs" or n.startswith("beam_jobs.") for n in names), path
