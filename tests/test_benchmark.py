"""python -m benchmarks --device runs (here on CPU, the Triton rows in the interpreter), so the GPU
command is tested before a GPU is lent. Nothing here judges speed: that is the benchmark's job."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_device_benchmark_runs_every_table_on_cpu():
    env = dict(os.environ, TRITON_INTERPRET='1')
    # 32x32: the first level (8x8) is the only one as large as the kernel, and is what runs the peers
    # one thread, as every tool a test worker starts (tests/conftest.py): two would contend with the other worker
    run = subprocess.run([sys.executable, '-m', 'benchmarks', '--device', 'cpu', '--image', '32', '32',
                          '--repeats', '1', '--threads', '1'], cwd=REPO, capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    number = r'\d+\.\d+'
    for peer in ('triton', 'torch', 'sdpa'):  # the Triton kernels ran (interpreter), beside their peers
        assert re.search(rf'\| 8x8, 2 heads, dilation 1 \| {peer} \| {number} \| {number} \|', out), peer
    assert re.search(r'\| 8x8, 2 heads, dilation 1 \| natten \| n/a: ', out)  # natten serves no CPU call
    assert 'Triton/SDPA useful rate' in out
    for row in ('forward, fp32', 'forward + backward, fp32', 'forward, bf16 autocast',
                'forward + backward, bf16 autocast'):
        assert re.search(rf'\| {re.escape(row)} \| {number} \| {number} \| {number} \|', out), row
    assert re.search(rf'\| fp32 \| {number} \| {number} \| {number} \|', out)  # the Mask R-CNN training step


def test_kernel_floor_replays_every_linear_convolution_and_na2d_call_of_a_forward():
    # The compile table's floor: every GEMM, convolution and na2d call of one forward, replayed
    # alone. Counted here from the architecture: four linear layers (qkv, proj, fc1, fc2) and one
    # na2d call per layer; the two stem convolutions and one downsampler between levels.
    from benchmarks.cpu import kernel_floor
    from dinat_mm.models import DiNAT
    depths = [2, 1, 3, 1]
    model = DiNAT(embed_dim=16, depths=depths, num_heads=[1, 2, 2, 4], kernel_size=3, dilations=None).eval()
    floor = kernel_floor(model, torch.randn(1, 3, 96, 128), repeats=1)
    assert {kind: count for kind, (count, _) in floor.items()} == dict(
        Linear=4 * sum(depths), na2d=sum(depths), Conv2d=2 + len(depths) - 1)
    assert all(seconds > 0 for _, seconds in floor.values())
