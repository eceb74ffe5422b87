"""One command-line style for every `python -m` entry point of vcaption.

* Flags are kebab-case: `--batch-size`, never `--batch_size`.
* One name per concept:

  | flag           | means                                                                     |
  |----------------|---------------------------------------------------------------------------|
  | `--model`      | a model file (`.keras`) or a SavedModel directory (a command may also take |
  |                | a training run directory, and says so in its help)                        |
  | `--model-name` | a served model's name (TF Serving `model_spec.name`)                      |
  | `--batch-size` | a batch size                                                              |
  | `--images`     | image files: a directory or a file pattern                                |
  | `--num-images` | a number of images (`--num-videos`, `--num-frames`: of videos, frames)    |
  | `--output`     | where a command writes its results                                        |
  | `--verbose`    | also print the libraries' log lines and warnings (quiet by default)       |

* Old spellings stay as deprecated aliases: they still work and print one line on stderr naming
  the new flag (`add_argument(parser, "--batch-size", deprecated=["--batch_size"], ...)`). `--help`
  lists them after each flag's help, not as flags.
* Every `--help` shows the defaults (`make_parser`), and abbreviations are off: `--batch` is never
  silently taken for `--batch-size`.

The one exception is `vcaption.serving.devserver`, a stand-in for the stock
`tensorflow_model_server` whose flags are TF Serving's own (`--model_config_file`, ...), so that a
command works unchanged with either server.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Iterable

_DEPRECATED = "deprecated_aliases"


def warn_deprecated(old: str, new: str) -> None:
    """Prints the one-line deprecation warning of an old spelling on stderr."""
    print(f"warning: {old} is deprecated; use {new}", file=sys.stderr, flush=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, descriptions and epilogs as written, deprecated spellings named after
    the help of their flag instead of as flags of their own."""

    def _format_action_invocation(self, action):
        hidden = getattr(action, _DEPRECATED, ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [s for s in action.option_strings if s not in hidden]
        return super()._format_action_invocation(action)

    def _get_help_string(self, action):
        # A help text that already says what the default means ("default: its own") keeps it; a
        # required option has none.
        says_default = action.help and "default" in action.help
        plain = says_default or action.required
        help_text = (action.help or "") if plain else super()._get_help_string(action)
        hidden = getattr(action, _DEPRECATED, ())
        if hidden:
            help_text += f" [deprecated: {', '.join(hidden)}]"
        return help_text


def make_parser(prog: str, description: str | None = None, *, epilog: str | None = None,
                verbose: bool = True, **kwargs) -> argparse.ArgumentParser:
    """An `ArgumentParser` in the house style; with `verbose`, it has the `--verbose` flag."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    kwargs.setdefault("allow_abbrev", False)
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, **kwargs)
    if verbose:
        add_verbose(parser)
    return parser


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="also print TensorFlow's, absl's and Beam's log lines and library warnings")


_deprecating_classes: dict[type, type] = {}


def _deprecating(cls: type) -> type:
    """`cls` (an argparse Action class) that warns when it is reached by a deprecated spelling."""
    if cls not in _deprecating_classes:
        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in getattr(self, _DEPRECATED, ()):
                warn_deprecated(option_string, self.option_strings[0])
            cls.__call__(self, parser, namespace, values, option_string)

        _deprecating_classes[cls] = type(f"Deprecating{cls.__name__}", (cls,), {"__call__": __call__})
    return _deprecating_classes[cls]


def add_argument(container, *flags: str, deprecated: Iterable[str] = (), **kwargs) -> argparse.Action:
    """`container.add_argument(*flags, **kwargs)` (a parser, group or mutually exclusive group)
    that also accepts each `deprecated` spelling, warning that it is deprecated.

    The deprecated spellings are option strings of the same action, so `required`, mutually
    exclusive groups and defaults behave as for the new flag.
    """
    deprecated = tuple(deprecated)
    action = container.add_argument(*flags, *deprecated, **kwargs)
    if deprecated:
        setattr(action, _DEPRECATED, deprecated)
        action.__class__ = _deprecating(type(action))
    return action


def public_flags(parser: argparse.ArgumentParser) -> list[str]:
    """The long flags `--help` shows (deprecated spellings left out)."""
    return [s for a in parser._actions for s in a.option_strings
            if s.startswith("--") and s not in getattr(a, _DEPRECATED, ())]


def deprecated_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{deprecated spelling: the flag that replaces it}."""
    return {old: a.option_strings[0] for a in parser._actions for old in getattr(a, _DEPRECATED, ())}
