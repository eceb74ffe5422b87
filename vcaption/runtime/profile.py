"""Wall-clock seconds per phase of a run, so that a run says where its time went.

`Task.run` records every run (`recording()`): the phases it opens itself (data, each system's
training, evaluation, export) and the ones the code underneath opens with `phase(name)` (world
generation, Beam preprocessing, each system's decoding and scoring). Nested phases are named by
their path ("evaluate/test/lrcn_2f decode"). The table lands in `metrics.json["profile"]` and is
printed as one line at the end of the run: profile before optimising (issue 24).

Outside a recording `phase` only times nothing, so library code can open phases freely.
"""

from __future__ import annotations

import contextlib
import time

_recorded: dict[str, float] | None = None
_open: list[str] = []


@contextlib.contextmanager
def recording():
    """Collects the phases opened inside it; yields the dict (phase path -> seconds) it fills."""
    global _recorded
    outer, _recorded = _recorded, {}
    try:
        yield _recorded
    finally:
        _recorded = outer


@contextlib.contextmanager
def phase(name: str):
    """Times the block as `name` under the phases open around it (adds up if opened again)."""
    if _recorded is None:
        yield
        return
    _open.append(name)
    path = "/".join(_open)
    start = time.perf_counter()
    try:
        yield
    finally:
        _open.pop()
        if _recorded is not None:
            _recorded[path] = _recorded.get(path, 0.0) + time.perf_counter() - start


def rounded(seconds: dict[str, float]) -> dict[str, float]:
    """The table as `metrics.json` keeps it: tenths of a second."""
    return {name: round(s, 1) for name, s in seconds.items()}


def summary(seconds: dict[str, float]) -> str:
    """The top-level phases on one line, e.g. "data 95 s, train lrcn_2f 510 s, ... (total 700 s)"."""
    top = {name: s for name, s in seconds.items() if "/" not in name}
    parts = ", ".join(f"{name} {s:.0f} s" for name, s in top.items())
    return f"{parts} (total {sum(top.values()):.0f} s)"
