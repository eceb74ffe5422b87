"""beam_jobs.options: the jobs parse their own options strictly and pass Beam's through unchanged."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

import pytest

from beam_jobs import batch_caption, extract_features, options, preprocess

REPO = pathlib.Path(__file__).resolve().parents[2]

# The smallest valid command line of each job (nothing is run: only parsed).
JOBS = {
    "preprocess": (preprocess, ["--format", "karpathy", "--input", "X", "--output", "Y"]),
    "extract_features": (extract_features, ["--input", "X", "--output", "Y", "--encoder", "small_cnn"]),
    "batch_caption": (batch_caption, ["--model", "M", "--input", "X", "--output", "Y"]),
}
BEAM_ARGS = ["--runner", "DirectRunner", "--direct_num_workers", "1", "--direct_running_mode",
             "in_memory", "--temp_location=/tmp/beam", "--experiments", "a", "--experiments", "b"]


def _parse_error(capsys, module, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_mistyped_option_exits_2_naming_it_and_the_right_spelling():
    """The brief's case, as a user runs it: before, Beam dropped --image_size and the job ran at 256."""
    completed = subprocess.run(
        [sys.executable, "-m", "beam_jobs.preprocess", "--format", "karpathy", "--input", "X",
         "--output", "Y", "--image_size", "64"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert completed.returncode == 2, completed.stderr
    assert "unrecognized arguments: --image_size (did you mean --image-size?)" in completed.stderr
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("job", sorted(JOBS))
def test_beam_options_pass_through_in_order_and_unknown_ones_are_errors(job, capsys):
    module, required = JOBS[job]
    args, beam_args = module.parse_args([*required, *BEAM_ARGS[:4], "--verbose", *BEAM_ARGS[4:]])
    assert beam_args == BEAM_ARGS and args.verbose
    err = _parse_error(capsys, module, [*required, "--direct_num_worker", "2"])
    assert "--direct_num_worker (did you mean --direct_num_workers?)" in err
    err = _parse_error(capsys, module, [*required, "--num_shards=3"])
    assert "--num_shards (did you mean --num-shards?)" in err
    assert "stray" in _parse_error(capsys, module, [*required, "stray"])  # a stray word, too
    # A Beam option's value is checked by Beam's own parser, and reported as this job's error.
    err = _parse_error(capsys, module, [*required, "--direct_num_workers", "two"])
    assert "Beam pipeline option" in err and "--direct_num_workers" in err and "two" in err
    # After a lone --, everything goes to Beam unchecked.
    _, beam_args = module.parse_args([*required, "--runner", "PortableRunner", "--", "--job_server_x", "1"])
    assert beam_args == ["--runner", "PortableRunner", "--job_server_x", "1"]


def test_the_readme_dataflow_commands_parse_unchanged(capsys):
    """README "Preprocessing on Dataflow" and "Batch captioning on Dataflow", verbatim."""
    preprocess_args, beam_args = preprocess.parse_args("""
        --format coco
        --input gs://BUCKET/coco/annotations/captions_train2017.json --images gs://BUCKET/coco
        --output gs://BUCKET/coco-records --image-size 256
        --runner DataflowRunner --project PROJECT --region REGION --temp_location gs://BUCKET/tmp
        --extra_package dist/vcaption-0.1.0.tar.gz --machine_type n2-standard-8""".split())
    assert preprocess_args.image_size == 256 and preprocess_args.images == "gs://BUCKET/coco"
    assert beam_args[:2] == ["--runner", "DataflowRunner"] and len(beam_args) == 12
    common = """--model gs://BUCKET/saved_models/lrcn_2f/1
        --input gs://BUCKET/photos/*.jpg --output gs://BUCKET/captions/run1 --format jsonl
        --runner DataflowRunner --project PROJECT --region REGION --temp_location gs://BUCKET/tmp""".split()
    _, beam_args = batch_caption.parse_args(
        [*common, *"--setup_file ./pyproject.toml --machine_type n2-standard-8 --max_num_workers 50".split()])
    assert beam_args[-6:] == ["--setup_file", "./pyproject.toml", "--machine_type", "n2-standard-8",
                              "--max_num_workers", "50"]
    gpu = ["--sdk_container_image", "REGION-docker.pkg.dev/PROJECT/REPO/vcaption-gpu:TAG", "--experiments",
           "use_runner_v2", "--experiments", "no_use_multiple_sdk_containers", "--machine_type",
           "n1-standard-8", "--dataflow_service_options",
           "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver",
           "--number_of_worker_harness_threads", "1"]
    args, beam_args = batch_caption.parse_args([*common, *gpu, "--batch-size", "64"])
    assert args.batch_size == 64 and beam_args[-len(gpu):] == gpu
    assert capsys.readouterr().err == ""


def _beam_value(action: argparse.Action) -> list[str]:
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(next(iter(action.choices)))]
    return ["1"]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_every_option_beam_defines_passes_and_none_is_shadowed_by_a_job_option(job):
    """Whatever Beam's own parser accepts, the job passes on, unchanged; no job flag is a Beam flag."""
    module, required = JOBS[job]
    beam = options.beam_parser()

    def refuse(message):
        raise ValueError(message)

    beam.error = refuse
    theirs = {s for a in beam._actions for s in a.option_strings}
    assert {"--runner", "--direct_num_workers", "--project", "--region", "--temp_location",
            "--extra_package", "--setup_file", "--sdk_container_image"} <= theirs
    ours = {s for a in module.build_parser()._actions for s in a.option_strings} - {"-h", "--help"}
    assert not ours & theirs
    checked = 0
    for action in beam._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            argv = [flag, *_beam_value(action)]
            try:
                _, unknown = beam.parse_known_args(argv)
            except Exception:  # a value Beam itself refuses: not what this test is about
                continue
            assert not unknown
            assert module.parse_args([*required, *argv])[1] == argv
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("job", ["extract_features", "batch_caption"])
def test_max_batch_size_is_a_deprecated_alias_of_batch_size(job, capsys):
    module, required = JOBS[job]
    args, beam_args = module.parse_args([*required, "--max-batch-size", "7", "--direct_num_workers", "1"])
    assert args.batch_size == 7 and beam_args == ["--direct_num_workers", "1"]
    assert capsys.readouterr().err == "warning: --max-batch-size is deprecated; use --batch-size\n"


def test_a_job_parser_shows_beam_options_pass_through_in_its_help():
    text = preprocess.build_parser().format_help()
    assert "(default: 256)" in text and "--runner" in text and "--direct_num_workers" in text
