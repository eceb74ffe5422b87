"""Benchmarks that print figures measured as ratios within one run (the machine is shared and noisy)."""

from __future__ import annotations

import subprocess
import sys
import time


def report_worker_scaling(benchmark: str, rows: list[dict]) -> float:
    """Prints one line per worker count, the 2-over-1 speed-up and a JSON line; returns the ratio.

    `rows`: [{"workers", "images", "seconds", "images_per_s", ...}] for 1 then 2 workers, measured
    in the same run (the machine is shared: only ratios from one run mean anything).
    """
    import json

    for row in rows:
        print(f"{benchmark}  workers={row['workers']}  images={row['images']}  "
              f"time={row['seconds']:.1f}s  images/s={row['images_per_s']:.1f}")
    ratio = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    print(f"speed-up 2 workers / 1 worker: {ratio:.2f}x")
    print(json.dumps({"benchmark": benchmark, "rows": rows, "ratio_2_over_1": round(ratio, 3)}))
    return ratio


def run_job(module: str, args: list[str], verbose: bool = False) -> float:
    """Runs `python -m module *args` (a Beam job) and returns its wall time in seconds; raises
    `RuntimeError` with the end of its output when it fails."""
    command = [sys.executable, "-m", module, *args, *(["--verbose"] if verbose else [])]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=not verbose, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        tail = "\n".join(((completed.stdout or "") + (completed.stderr or "")).splitlines()[-20:])
        raise RuntimeError(f"{' '.join(command)} failed (exit {completed.returncode}):\n{tail}")
    return seconds
