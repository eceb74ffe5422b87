"""The PyTorch peer rows of `python -m vcaption.bench train`.

The peer is `../shared/bench/torch_lrcn2f.py` beside the repository: LRCN-2f written in plain
PyTorch the way a user writes it (`nn.LSTM`, image concatenated at every step), one float32 row and
one `torch.autocast` bf16 row. PyTorch is never a vcaption dependency: the peer runs in its own
process under any Python that can `import torch` (`--torch-python`, e.g. a separate venv), after the
TensorFlow rows, so the two never share the cores.

The peer hard-codes its sizes (`H, V, T, B, F, E = 1000, 9000, 16, 100, 4096, 1000`). Run as a
script by that Python (standard library only), this file replaces that one assignment with the
benchmark's sizes and runs the rest of the peer unchanged:

    python torch_peer.py PEER H,V,T,B,F,E STEPS [bf16]
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

SIZE_NAMES = ("H", "V", "T", "B", "F", "E")  # the peer's names: hidden, vocab, steps, batch, features, embedding
DTYPES = {"fp32": "float32", "bf16": "bf16 autocast"}  # the peer's mode -> the row's dtype
# The peer's result line: "torch 2.5.1 fp32 threads 2: 53.5 examples/s, 210.3 GFLOP/s, peak ..."
RESULT = re.compile(r"torch (?P<version>\S+) (?:fp32|bf16-autocast) threads (?P<threads>\d+): "
                    r"(?P<examples_per_s>[\d.]+) examples/s")
INSTALL_HINT = ("python3 -m venv ../torchvenv && ../torchvenv/bin/pip install torch, then pass "
                "--torch-python ../torchvenv/bin/python")


def default_peer_path() -> pathlib.Path:
    """`../shared/bench/torch_lrcn2f.py` next to the repository this package runs from."""
    return pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "bench" / "torch_lrcn2f.py"


def torch_version(python: str) -> str | None:
    """`torch.__version__` as seen by `python`, None when it cannot import torch."""
    try:
        done = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_peer(python: str, peer: str, sizes: dict, steps: int, mode: str, timeout: float) -> dict:
    """One peer row: `mode` "fp32" or "bf16", `steps` timed training steps after the peer's 2
    warm-up steps. Raises RuntimeError with the peer's own error output when it fails."""
    command = [python, __file__, peer, ",".join(str(sizes[name]) for name in SIZE_NAMES), str(steps)]
    if mode == "bf16":
        command.append("bf16")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"the {mode} peer took over {timeout:.0f} s") from error
    match = RESULT.search(done.stdout)
    if done.returncode != 0 or match is None:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
        raise RuntimeError(f"the {mode} peer failed (exit {done.returncode}): {' '.join(detail)}")
    return {"model": "PyTorch peer nn.LSTM", "dtype": DTYPES[mode],
            "examples_per_s": float(match["examples_per_s"]), "torch": match["version"],
            "threads": int(match["threads"]), "output": match.group(0)}


def peer_rows(python: str, peer: str, sizes: dict, steps: int, timeout: float = 1800
              ) -> tuple[list[dict], str | None]:
    """Both peer rows, or no rows and the one line that says why and how to get them."""
    if not pathlib.Path(peer).is_file():
        return [], f"PyTorch peer rows skipped: no peer script at {peer} (--torch-peer PATH)"
    if torch_version(python) is None:
        return [], (f"PyTorch peer rows skipped: {python} cannot import torch (an optional extra, "
                    f"never a vcaption dependency). To get them: {INSTALL_HINT}")
    try:
        return [run_peer(python, peer, sizes, steps, mode, timeout) for mode in DTYPES], None
    except RuntimeError as error:
        return [], f"PyTorch peer rows skipped: {error}"


def _replace_sizes(tree: ast.Module, sizes: list[int], path: str) -> None:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Tuple)
                and [getattr(e, "id", None) for e in node.targets[0].elts] == list(SIZE_NAMES)):
            node.value = ast.Tuple([ast.Constant(value) for value in sizes], ast.Load())
            ast.fix_missing_locations(tree)
            return
    raise SystemExit(f"{path}: no top-level `{', '.join(SIZE_NAMES)} = ...` to set the sizes with")


def _main(argv: list[str]) -> None:
    """Runs the peer at the given sizes, as if `python PEER STEPS [bf16]`."""
    path, sizes, peer_argv = argv[0], [int(v) for v in argv[1].split(",")], argv[2:]
    if len(sizes) != len(SIZE_NAMES):
        raise SystemExit(f"sizes must be {','.join(SIZE_NAMES)}, got {argv[1]!r}")
    tree = ast.parse(pathlib.Path(path).read_text(), path)
    _replace_sizes(tree, sizes, path)
    sys.argv = [path, *peer_argv]
    sys.path[0] = str(pathlib.Path(path).resolve().parent)  # as `python PEER` would, not vcaption/bench
    exec(compile(tree, path, "exec"), {"__name__": "__main__", "__file__": path})


if __name__ == "__main__":
    _main(sys.argv[1:])
