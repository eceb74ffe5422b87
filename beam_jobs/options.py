"""Strict command lines for the Beam jobs: vcaption's options are checked, Beam's pass through.

    parser = options.job_parser("python -m beam_jobs.preprocess", description)
    ...                                        # the job's own (kebab-case) options
    args, beam_args = options.parse(parser, argv)
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args))

Whatever the job's parser does not know must be an Apache Beam pipeline option — `--runner`,
`--direct_num_workers`, `--direct_running_mode`, `--project`, `--region`, `--temp_location`,
`--extra_package`, `--setup_file`, ... — exactly as Beam itself knows them: `beam_parser()` is the
parser Beam builds in `PipelineOptions.get_all_options` from the `_add_argparse_args` of every
`PipelineOptions` subclass, handed out by that method's public `add_extra_args_fn` hook. So no
list of Beam flags is kept here: options of a newer Beam, and of any options class a job
imports, pass as they are. Anything else — a mistyped `--image_size`, a stray word — is an error
(exit status 2) that names it and suggests the closest flag (`--image-size`), where before Beam
dropped it with a log line and the job ran with the default.

Arguments after a lone `--` go to Beam unchecked: the escape for options that Beam itself only
learns when the pipeline runs (a portable runner's job server can add its own).
"""

from __future__ import annotations

import argparse
import difflib
from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from vcaption import cli

EPILOG = """\
Apache Beam pipeline options pass through to Beam: --runner, --direct_num_workers,
--direct_running_mode, --project, --region, --temp_location, --extra_package, --setup_file, ...
(every option of a Beam PipelineOptions class). Any other option is an error. Arguments after a
lone -- go to Beam unchecked."""


def job_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """The house-style parser of a Beam job (`vcaption.cli.make_parser`, with `--verbose`)."""
    return cli.make_parser(prog, description, epilog=EPILOG)


def beam_parser() -> argparse.ArgumentParser:
    """The argument parser Apache Beam builds from every `PipelineOptions` subclass."""
    captured: list[argparse.ArgumentParser] = []
    PipelineOptions([]).get_all_options(add_extra_args_fn=captured.append)
    return captured[0]


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]


def suggestion(flag: str, ours: Sequence[str], beams: Sequence[str]) -> str | None:
    """The flag a mistyped `flag` most likely meant: the kebab-case spelling of one of ours, else
    the closest of ours or Beam's."""
    kebab = "--" + flag.lstrip("-").replace("_", "-")
    if kebab in ours:
        return kebab
    close = difflib.get_close_matches(flag, [*ours, *beams], n=1, cutoff=0.75)
    return close[0] if close else None


def unrecognized_message(unknown: Sequence[str], parser: argparse.ArgumentParser,
                         beam: argparse.ArgumentParser) -> str:
    ours, beams = cli.public_flags(parser), _option_strings(beam)
    named = [u.split("=", 1)[0] for u in unknown if u.startswith("-")] or list(unknown)
    parts = []
    for flag in named:
        hint = suggestion(flag, ours, beams) if flag.startswith("-") else None
        parts.append(f"{flag} (did you mean {hint}?)" if hint else flag)
    return (f"unrecognized arguments: {', '.join(parts)}; they are neither options of this job "
            "(see --help) nor Apache Beam pipeline options")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the job's options, the Beam pipeline arguments) of `argv`; exits with status 2 on anything
    that is neither.

    The job's parser takes its options first (`parse_known_args`); what it leaves must parse with
    Beam's own parser (`beam_parser`), values included (`--direct_num_workers two` is an error
    too). The Beam arguments are returned as given, in order, for `PipelineOptions`.
    """
    argv = list(argv)
    unchecked: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, unchecked = argv[:cut], argv[cut + 1:]
    args, rest = parser.parse_known_args(argv)
    beam = beam_parser()
    # Report Beam's complaints (a bad value) as this job's: its usage line, exit status 2.
    beam.error = lambda message: parser.error(f"Beam pipeline option: {message}")
    try:
        _, unknown = beam.parse_known_args(rest)
    except Exception as error:  # some Beam actions raise on a malformed value instead of erroring
        parser.error(f"Beam pipeline options {' '.join(rest)}: {type(error).__name__}: {error}")
    if unknown:
        parser.error(unrecognized_message(unknown, parser, beam))
    return args, rest + unchecked
