"""`python -m vcaption.bench train`'s PyTorch peer rows: the peer runs at the benchmark's sizes
under another Python, its rows and the vcaption/PyTorch ratio are printed, and without torch one
line says how to get them. A stand-in peer (the real one's structure and result line, no torch)
keeps this fast and independent of PyTorch being installed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from vcaption.bench import torch_peer
from vcaption.bench import train as bench_train

# The real peer's shape: sizes in one top-level tuple assignment, `STEPS [bf16]` arguments, and its
# result line. The rate it prints encodes the sizes it ran with (and bf16 doubles it).
STAND_IN_PEER = '''import sys
H, V, T, B, F, E = 1000, 9000, 16, 100, 4096, 1000
BF16 = len(sys.argv) > 2 and sys.argv[2] == "bf16"
steps = int(sys.argv[1])
rate = (H + V + T + B + F + E) * (2 if BF16 else 1) / 10 + steps / 1000
print(f"torch 0.0-standin {'bf16-autocast' if BF16 else 'fp32'} threads 1: {rate:.3f} examples/s, "
      f"1.0 GFLOP/s, peak 1 GFLOP/s, MFU 1.00%")
'''
SIZES = {"H": 8, "V": 20, "T": 4, "B": 4, "F": 6, "E": 8}  # sum 50


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """The stand-in peer, and a `torch` module importable by child Pythons (PYTHONPATH)."""
    peer = tmp_path / "torch_lrcn2f.py"
    peer.write_text(STAND_IN_PEER)
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.0-standin"\n')
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    return peer


def test_peer_runs_at_the_given_sizes_in_both_modes(stand_in):
    rows, message = torch_peer.peer_rows(sys.executable, str(stand_in), SIZES, steps=3)
    assert message is None
    assert [(row["dtype"], row["examples_per_s"]) for row in rows] == [("float32", 5.003),
                                                                       ("bf16 autocast", 10.003)]
    assert rows[0]["torch"] == "0.0-standin"


def test_bench_prints_the_peer_rows_and_the_ratio(stand_in, capsys):
    bench_train.main(["--hidden", "8", "--vocab", "20", "--steps", "4", "--batch-size", "4",
                      "--features", "6", "--iterations", "1", "--windows", "1", "--dtype", "float32",
                      "--no-xla-optimizer-row", "--no-baseline", "--torch-peer", str(stand_in)])
    lines = capsys.readouterr().out.splitlines()
    result = json.loads(lines[-1])
    ours = result["rows"][0]["examples_per_s"]
    assert [row["examples_per_s"] for row in result["torch_peer_rows"]] == [5.001, 10.001]  # 1 step
    assert result["vs_pytorch"]["pytorch_best"].endswith("bf16 autocast")
    assert result["vs_pytorch"]["ratio"] == round(ours / 10.001, 2)
    ratio_line = [line for line in lines if line.startswith("vcaption best (LRCN-2f float32)")]
    assert ratio_line and ratio_line[0].endswith(f"= {result['vs_pytorch']['ratio']:.2f}x")
    assert sum(line.startswith("PyTorch peer nn.LSTM") for line in lines) == 2
    # The ceiling: every training FLOP at the faster GEMM peak, over the better peer row.
    peak = max(result["gemm_peak_gflop_per_s"].values())
    ceiling = peak * 1e9 / result["flops_per_example"]["train"]
    assert result["vs_pytorch"]["ceiling_ratio"] == pytest.approx(ceiling / 10.001, rel=1e-3)  # peaks rounded in the JSON
    assert any(line.startswith("ceiling on this host") for line in lines)


def test_without_torch_or_peer_one_line_says_how_to_get_the_rows(tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "nothing"))  # no torch for the child Python
    if subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("torch is installed in this Python")
    rows, message = torch_peer.peer_rows(sys.executable, str(stand_in), SIZES, steps=1)
    assert rows == [] and "cannot import torch" in message and "--torch-python" in message
    rows, message = torch_peer.peer_rows(sys.executable, str(tmp_path / "absent.py"), SIZES, steps=1)
    assert rows == [] and "no peer script" in message and "--torch-peer" in message


def test_a_failing_peer_is_reported_not_raised(stand_in):
    stand_in.write_text("import sys\nH, V, T, B, F, E = 1, 2, 3, 4, 5, 6\nraise SystemExit('out of memory')\n")
    rows, message = torch_peer.peer_rows(sys.executable, str(stand_in), SIZES, steps=1)
    assert rows == [] and "out of memory" in message


def test_the_real_peer_has_the_sizes_assignment_the_launcher_replaces():
    peer = torch_peer.default_peer_path()
    if not peer.is_file():
        pytest.skip(f"no peer at {peer}")
    tree = ast.parse(peer.read_text())
    torch_peer._replace_sizes(tree, [8, 20, 4, 4, 6, 8], str(peer))
    assert "H, V, T, B, F, E = (8, 20, 4, 4, 6, 8)" in ast.unparse(tree)
    assert "examples/s" in peer.read_text()  # the result line the rows are read from
