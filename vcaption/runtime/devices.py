"""Where training runs: the tf.distribute strategy, the chief worker, and the dtype policy.

One place for what every family's training needs from its host: `distribution_strategy` by name
(one device, `mirrored` GPUs, `multi_worker` from TF_CONFIG), which worker leads (`is_chief`) and
where the others write (`worker_output`), and what `model.dtype="auto"` means here.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

# TensorFlow is imported inside the functions that use it: `import vcaption.runtime.devices` (its
# names, `is_chief`) then costs nothing, and `python -m vcaption.train` can refuse a bad set-up
# (no Java) before the seconds-long TensorFlow import.
STRATEGIES = ("default", "mirrored", "multi_worker")

# `model.dtype` of presets that train in bf16 where it is fast (`automatic_dtype`).
AUTO_DTYPE = "auto"


# Kernel CPU flags of the instructions oneDNN uses for bf16 matrix products: AMX tiles (Intel
# Sapphire Rapids and later) and AVX-512 BF16 dot products (Intel Cooper Lake, AMD Zen 4 and later).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True on CPUs that compute bf16 products in hardware (`NATIVE_BF16_FLAGS`), from the kernel's flags."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith("flags") and set(NATIVE_BF16_FLAGS) & set(line.split()) for line in f)
    except OSError:
        return False


def automatic_dtype() -> str | None:
    """What `model.dtype="auto"` means: mixed bf16 on a CPU host with native bf16 products, where
    oneDNN runs bf16 matrix products about twice as fast as fp32; float32 (None) elsewhere: without
    them bf16 is emulated and slower, and GPUs get mixed precision only when asked
    (`--mixed-precision`: float16 there).

    Measured steps of the default preset (lrcn_2f, batch 64, 64x64 images, H 256): AMX host
    ~25% faster in bf16; AMD EPYC (Zen 4, avx512_bf16, no AMX) 81 ms against 105 ms in fp32.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or not cpu_has_native_bf16():
        return None
    return "mixed_bfloat16"


def mixed_precision_policy() -> str:
    """`--mixed-precision`: float16 on GPUs (tensor cores), bf16 on CPUs."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def resolve_dtype(model_args: dict) -> dict:
    """Constructor arguments with `dtype="auto"` resolved (`automatic_dtype`)."""
    args = dict(model_args)
    if args.get("dtype") == AUTO_DTYPE:
        args["dtype"] = automatic_dtype()
    return args


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (worker 0 leads without a chief)."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = cluster.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster.get("cluster", {})


def worker_output(output: str) -> str:
    """Non-chief workers write their checkpoints to a scratch directory of their own, so that two
    processes never write the same files; the chief's directory is the run's."""
    if is_chief():
        return output
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return os.path.join(output, "workers", f"{task['type']}_{task['index']}")


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """tf.distribute strategy by name. multi_worker reads the cluster from TF_CONFIG."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multi_worker needs TF_CONFIG describing the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
