"""Benchmarks that print figures measured as ratios within one run (the machine is shared and noisy)."""


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
