"""CPU benchmark: na2d at the DiNAT-T stage shapes and the DiNAT-T backbone beside mmdet's Swin-T.

Run: ``.venv/bin/python tools/benchmark.py [--threads 2] [--repeats 5] [--quick]``. Prints a
markdown table (for README) with the machine's measured fp32 GEMM rate. Backbones run
alternately, after warm-up, and the median is reported; each peak memory is the growth of the
resident set of a fresh process running only that workload.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time

import torch

STAGES = [  # DiNAT-T on an 800x1216 image: (height, width, heads, dilation of the sparse layer)
    (200, 304, 2, 28), (100, 152, 4, 14), (50, 76, 8, 7), (25, 38, 16, 3)]
HEAD_DIM, KERNEL = 32, 7
DINAT_T_MASKRCNN = dict(
    type='DiNAT', embed_dim=64, mlp_ratio=3.0, depths=[3, 4, 18, 5], num_heads=[2, 4, 8, 16],
    kernel_size=7, drop_path_rate=0.0,
    dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]])
SWIN_T = dict(type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
              window_size=7, mlp_ratio=4, drop_path_rate=0.0, out_indices=(0, 1, 2, 3))


def gemm_rate(threads: int, n: int = 2048, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build_backbone(name: str) -> torch.nn.Module:
    import dinat_mm  # noqa: F401  (registers DiNAT)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(dict(DINAT_T_MASKRCNN if name == 'dinat_t' else SWIN_T))
    model.eval()  # mmdet's SwinTransformer.train() returns None: do not chain
    return model


def na2d_stage_flops(height: int, width: int, heads: int) -> float:
    """Useful work of one forward call: QK and AV, 2 FLOPs per multiply-add each."""
    return 2 * 2 * height * width * KERNEL**2 * HEAD_DIM * heads


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def _reset_peak() -> int:
    """Restart the peak-RSS counter (Linux >= 4.0) and return the current RSS in bytes. ru_maxrss
    would not do: a child inherits its parent's high-water mark across fork and exec."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return _status_kib('VmRSS') * 1024


def child(kind: str, spec, threads: int, repeats: int) -> dict:
    """Run one workload in this (fresh) process; report median time and resident-set growth."""
    torch.set_num_threads(threads)
    if kind == 'na2d':
        from dinat_mm.ops import na2d
        height, width, heads, dilation = spec
        q, k, v = (torch.randn(1, heads, height, width, HEAD_DIM) for _ in range(3))
        rpb = torch.randn(heads, 2 * KERNEL - 1, 2 * KERNEL - 1)
        base = _reset_peak()
        with torch.no_grad():
            fn = lambda: na2d(q, k, v, KERNEL, dilation, rpb=rpb)  # noqa: E731
            fn()
            times = [_timed(fn) for _ in range(repeats)]
    else:
        model = build_backbone(spec)
        x = torch.randn(1, 3, 800, 1216)
        base = _reset_peak()
        with torch.no_grad():
            times = [_timed(lambda: model(x))]
    peak = _status_kib('VmHWM') * 1024 - base
    return dict(time=statistics.median(times), peak=peak)


def run_child(kind: str, spec, threads: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, '--child', kind, json.dumps(spec),
                          '--threads', str(threads), '--repeats', str(repeats)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f'benchmark child {kind} {spec} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def backbones_alternating(threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    models = {name: build_backbone(name) for name in ('dinat_t', 'swin_t')}
    x = torch.randn(1, 3, 800, 1216)
    times = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)  # warm-up: plan caches, allocator
        for _ in range(repeats):
            for name, model in models.items():
                times[name].append(_timed(lambda: model(x)))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--child', nargs=2, metavar=('KIND', 'SPEC'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child
        print(json.dumps(child(kind, json.loads(spec), args.threads, args.repeats)))
        return

    gemm = gemm_rate(args.threads)
    print(f'# dinat_mm CPU benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, '
          f'torch {torch.__version__}, {args.threads} threads')
    print(f'\nfp32 GEMM (2048^3): {gemm:.0f} GFLOP/s\n')
    print('| na2d, k=7, head_dim 32, rpb, forward | time (ms) | useful GFLOP/s | of GEMM rate | peak memory (MiB) |')
    print('|---|---|---|---|---|')
    for height, width, heads, dilation in STAGES:
        for d in (1, dilation):
            r = run_child('na2d', [height, width, heads, d], args.threads, args.repeats)
            rate = na2d_stage_flops(height, width, heads) / r['time'] / 1e9
            print(f'| {height}x{width}, {heads} heads, dilation {d} | {r["time"] * 1e3:.1f} | {rate:.1f} '
                  f'| {rate / gemm:.1%} | {r["peak"] / 2**20:.0f} |')
    times = backbones_alternating(args.threads, args.repeats)
    peaks = {name: run_child('backbone', name, args.threads, 1)['peak'] for name in times}
    print('\n| backbone forward, 1x3x800x1216, no grad | median time (s) | peak memory (MiB) |')
    print('|---|---|---|')
    labels = {'dinat_t': 'DiNAT-T (Mask R-CNN dilations)', 'swin_t': "mmdet Swin-T"}
    for name, t in times.items():
        print(f'| {labels[name]} | {t:.2f} | {peaks[name] / 2**20:.0f} |')
    print(f'| ratio DiNAT-T / Swin-T | {times["dinat_t"] / times["swin_t"]:.2f} | '
          f'{peaks["dinat_t"] / peaks["swin_t"]:.2f} |')


if __name__ == '__main__':
    main()
