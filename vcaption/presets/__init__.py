"""Named presets, one module per family; importing this package registers them all (the `@preset`
decorator of `vcaption.config`).

A preset is code: a function returning an `ExperimentConfig`, whose docstring's first line says
what it is and whose body gives the command that runs it and the result it reaches.
"""

from vcaption.config import PRESETS, ExperimentConfig
from vcaption.presets import captioning  # noqa: F401
from vcaption.presets import noc  # noqa: F401
from vcaption.presets import objects  # noqa: F401
from vcaption.presets import region_captioning  # noqa: F401
from vcaption.presets import retrieval  # noqa: F401
from vcaption.presets import video  # noqa: F401
from vcaption.presets import vqa  # noqa: F401


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    return PRESETS[name]()


def summary(name: str, width: int = 100) -> str:
    """The first paragraph of a preset's docstring, on one line of at most `width` characters."""
    paragraph = " ".join((PRESETS[name].__doc__ or "").strip().split("\n\n")[0].split())
    return paragraph if len(paragraph) <= width else paragraph[:width - 3].rsplit(" ", 1)[0] + "..."
