"""The CPU tables: na2d at DiNAT-T's level shapes beside the pure-PyTorch path, DiNAT-T beside
mmdet's Swin-T (backbone eager and compiled, Mask R-CNN inference, ONNX, bfloat16), the kernel floor
of a compiled forward, and each peak memory (the resident-set growth of a fresh process running only
that workload)."""
from __future__ import annotations

import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from .workloads import (DETECTORS, REPO, _timed, alternating, build_backbone, build_classifier, build_detector,
                        kernel_size, level_shapes, reset_peak, status_kib)

def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(_timed(lambda: a @ b) for _ in range(repeats)) / 1e9


def kernel_floor(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict:
    """{kind: (calls, seconds)} for the linear layers, convolutions and na2d calls of one eager
    no-grad forward: each call is recorded with its inputs, then replayed alone (median of
    ``repeats``) and summed by kind. That sum is what is left of the forward for a compiler that
    fuses everything else away but calls the same GEMM, convolution and na2d kernels."""
    from unittest import mock

    from dinat_mm.ops import cpu_kernel
    calls = []
    hooks = [m.register_forward_hook(lambda mod, args, _: calls.append((type(mod).__name__, partial(mod, *args))))
             for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    real = cpu_kernel.na2d

    def record(*args, **kwargs):
        calls.append(('na2d', partial(real, *args, **kwargs)))
        return real(*args, **kwargs)

    try:
        with torch.no_grad(), mock.patch.object(cpu_kernel, 'na2d', record):
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    floor = {}
    with torch.no_grad():
        for kind, call in calls:
            count, seconds = floor.get(kind, (0, 0.0))
            floor[kind] = (count + 1, seconds + alternating({kind: call}, repeats)[kind])
    return floor


def na2d_level_flops(height: int, width: int, heads: int, head_dim: int) -> float:
    """Useful work of one forward call: QK and AV, 2 FLOPs per multiply-add each."""
    return 2 * 2 * height * width * kernel_size()**2 * head_dim * heads


def child(kind: str, spec, repeats: int) -> dict:
    """Run one workload in this (fresh) process; report median time and resident-set growth."""
    if kind == 'na2d':
        from dinat_mm.ops import na2d
        height, width, heads, head_dim, dilation, backend = spec
        k = kernel_size()
        # q, k, v as the backbone passes them: views of one [B, H, W, 3, heads, D] projection
        qkv = torch.randn(1, height, width, 3, heads, head_dim)
        q, k_, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)
        rpb = torch.randn(heads, 2 * k - 1, 2 * k - 1)
        fn = partial(na2d, q, k_, v, k, dilation, rpb=rpb, backend=backend)
        base = reset_peak()
        with torch.no_grad():
            times = [_timed(fn) for _ in range(repeats + 1)][1:]
    elif kind == 'forward':  # backbone forward, 1x3x800x1216
        model = build_backbone(spec)
        model.eval()
        x = torch.randn(1, 3, 800, 1216)
        base = reset_peak()
        with torch.no_grad():
            times = [_timed(lambda: model(x))]
    elif kind == 'onnx':  # DiNAT-T backbone in onnxruntime, 1x3x800x1216, spec = queries per gather chunk
        import onnxruntime

        from dinat_mm import export
        holder = torch.nn.Module()
        holder.backbone = build_backbone('dinat_t').eval()
        module = export.Part(holder, 'backbone').eval()
        x = torch.randn(1, 3, 800, 1216)
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / 'dinat_t.onnx')
            start = time.perf_counter()
            export.export_onnx(module, x, path, spec)
            export_time = time.perf_counter() - start
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
            feed = {'image': x.numpy()}
            base = reset_peak()
            times = [_timed(lambda: session.run(None, feed)) for _ in range(repeats + 1)][1:]
            size = Path(path).stat().st_size
        return dict(time=statistics.median(times), peak=status_kib('VmHWM') * 1024 - base, size=size,
                    export_time=export_time)
    else:  # 'train_step': backbone forward + backward, 2x3x512x512, spec = [name, with_cp]
        name, with_cp = spec
        model = build_backbone(name, with_cp=with_cp)
        model.train()
        x = torch.randn(2, 3, 512, 512)
        base = reset_peak()
        times = [_timed(lambda: sum(o.mean() for o in model(x)).backward())]
    return dict(time=statistics.median(times), peak=status_kib('VmHWM') * 1024 - base)


def run_child(kind: str, spec, threads: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, '-m', 'benchmarks', '--child', kind, json.dumps(spec),
                          '--threads', str(threads), '--repeats', str(repeats)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f'benchmark child {kind} {spec} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ratio_rows(times: dict) -> str:
    return f'{times["dinat_t"]:.2f} | {times["swin_t"]:.2f} | {times["dinat_t"] / times["swin_t"]:.2f}'


def header(args) -> str:
    return (f'# dinat_mm CPU benchmark, {datetime.date.today()}, {platform.machine()} {cpu_name()}, '
            f'torch {torch.__version__}, {args.threads} threads, median of {args.repeats}')


def cpu_name() -> str:
    try:
        names = [ln.split(':', 1)[1].strip() for ln in open('/proc/cpuinfo') if ln.startswith('model name')]
        flags = next(ln for ln in open('/proc/cpuinfo') if ln.startswith('flags')).split()
    except (OSError, StopIteration):
        return platform.processor()
    extensions = [f for f in ('avx512f', 'avx512_bf16', 'amx_bf16') if f in flags] or ['avx2' if 'avx2' in flags else '']
    return f'{names[0] if names else platform.processor()} ({", ".join(extensions)})'


CLASSIFIER_BATCH = 16


def classifier_table(args) -> dict:
    """DiNAT-T's ImageNet classifier beside mmpretrain's own Swin-T classifier: forward, no grad,
    float32, a batch of 16 at each config's test crop (224), alternating. Target: DiNAT-T at least
    Swin-T's throughput."""
    models = {name: build_classifier(name) for name in ('dinat_t', 'swin_t')}
    inputs = {name: torch.randn(CLASSIFIER_BATCH, 3, size, size) for name, (_, size) in models.items()}
    with torch.no_grad():
        times = alternating({n: partial(m, inputs[n], mode='tensor') for n, (m, _) in models.items()}, args.repeats)
    rate = {n: CLASSIFIER_BATCH / t for n, t in times.items()}
    size = models['dinat_t'][1]
    print(f'\n| ImageNet classifier, forward, batch {CLASSIFIER_BATCH} at {size}x{size}, float32 (random weights) '
          '| DiNAT-T | Swin-T (mmpretrain) | DiNAT-T / Swin-T |')
    print('|---|---|---|---|')
    print(f'| images/s | {rate["dinat_t"]:.1f} | {rate["swin_t"]:.1f} | {rate["dinat_t"] / rate["swin_t"]:.2f} |')
    held = rate['dinat_t'] >= rate['swin_t']
    print(f'\ntarget, DiNAT-T at least Swin-T\'s throughput: {"held" if held else "missed"}')
    return rate


def cpu_tables(args) -> None:
    gemm = gemm_rate()
    print(header(args))
    classifier_table(args)
    print(f'\nfp32 GEMM (2048^3): {gemm:.0f} GFLOP/s\n')
    print(f'| na2d at DiNAT-T\'s levels (800x1216 image), k={kernel_size()}, rpb, forward | time (ms) | useful GFLOP/s | of GEMM rate | peak memory (MiB) '
          '| pure-PyTorch path (ms) |')
    print('|---|---|---|---|---|---|')
    for height, width, heads, head_dim, dilation in level_shapes(800, 1216):
        for d in (1, dilation):
            r = run_child('na2d', [height, width, heads, head_dim, d, 'auto'], args.threads, args.repeats)
            ref = run_child('na2d', [height, width, heads, head_dim, d, 'torch'], args.threads, args.repeats)
            rate = na2d_level_flops(height, width, heads, head_dim) / r['time'] / 1e9
            print(f'| {height}x{width}, {heads} heads, dilation {d} | {r["time"] * 1e3:.1f} | {rate:.1f} '
                  f'| {rate / gemm:.1%} | {r["peak"] / 2**20:.0f} | {ref["time"] * 1e3:.1f} |')

    backbones = {name: build_backbone(name) for name in ('dinat_t', 'swin_t')}
    for model in backbones.values():
        model.eval()  # not chained: mmdet's SwinTransformer.train() returns None
    x = torch.randn(1, 3, 800, 1216)
    with torch.no_grad():
        forward = alternating({n: partial(m, x) for n, m in backbones.items()}, args.repeats)
    for model in backbones.values():
        model.train()
    x2 = torch.randn(2, 3, 512, 512)
    train = alternating({n: lambda m=m: sum(o.mean() for o in m(x2)).backward() for n, m in backbones.items()},
                        args.repeats)
    # torch.compile (inductor, static shapes as tools' --compile uses it): the first call of each mode
    # compiles, with a cold cache; then alternating
    import torch._inductor.config as inductor_config
    inductor_config.force_disable_caches = True
    compiled, compile_time = {}, {}
    for name, model in backbones.items():
        compiled[name, 'forward'], compiled[name, 'train'] = (torch.compile(model, dynamic=False) for _ in range(2))
        model.eval()
        with torch.no_grad():
            compile_time[name, 'forward'] = _timed(partial(compiled[name, 'forward'], x))
        model.train()
        compile_time[name, 'train'] = _timed(lambda: sum(o.mean() for o in compiled[name, 'train'](x2)).backward())
    for model in backbones.values():
        model.eval()
    with torch.no_grad():
        forward_c = alternating({n: partial(compiled[n, 'forward'], x) for n in backbones}, args.repeats)
    for model in backbones.values():
        model.train()
    train_c = alternating({n: lambda n=n: sum(o.mean() for o in compiled[n, 'train'](x2)).backward()
                           for n in backbones}, args.repeats)
    detectors = {name: build_detector(name) for name in DETECTORS}
    infer = alternating(detectors, args.repeats)
    peaks = {name: run_child('forward', name, args.threads, 1)['peak'] for name in backbones}
    print('\n| DiNAT-T vs Swin-T (random weights) | DiNAT-T | Swin-T | ratio |')
    print('|---|---|---|---|')
    print(f'| backbone forward, 1x3x800x1216, no grad (s) | {_ratio_rows(forward)} |')
    print(f'| backbone forward + backward, 2x3x512x512 (s) | {_ratio_rows(train)} |')
    print(f'| Mask R-CNN inference, one 800x1216 image (s) | {_ratio_rows(infer)} |')
    print(f'| peak memory, backbone forward 1x3x800x1216 (MiB) | '
          f'{_ratio_rows({k: v / 2**20 for k, v in peaks.items()})} |')

    print('\n| DiNAT-T backbone 1x3x800x1216, deployed (random weights) | time (s) | peak memory (MiB) | file (MiB) '
          '| export (s) |')
    print('|---|---|---|---|---|')
    print(f'| PyTorch eager, fp32 | {forward["dinat_t"]:.2f} | {peaks["dinat_t"] / 2**20:.0f} | | |')
    for chunk in (None, 4096):
        r = run_child('onnx', chunk, args.threads, args.repeats)
        label = 'all queries at once' if chunk is None else f'{chunk} queries per gather (--chunk {chunk})'
        print(f'| onnxruntime CPU, fp32, {label} | {r["time"]:.2f} | {r["peak"] / 2**20:.0f} '
              f'| {r["size"] / 2**20:.0f} | {r["export_time"]:.0f} |')

    print('\n| torch.compile (inductor, CPU) | DiNAT-T eager | DiNAT-T compiled | compiled / eager | Swin-T compiled '
          '| DiNAT-T / Swin-T, both compiled | compile time DiNAT-T / Swin-T (s) |')
    print('|---|---|---|---|---|---|---|')
    for label, eager, comp, mode in (('backbone forward, 1x3x800x1216, no grad (s)', forward, forward_c, 'forward'),
                                     ('backbone forward + backward, 2x3x512x512 (s)', train, train_c, 'train')):
        print(f'| {label} | {eager["dinat_t"]:.2f} | {comp["dinat_t"]:.2f} | {comp["dinat_t"] / eager["dinat_t"]:.2f} '
              f'| {comp["swin_t"]:.2f} | {comp["dinat_t"] / comp["swin_t"]:.2f} '
              f'| {compile_time["dinat_t", mode]:.0f} / {compile_time["swin_t", mode]:.0f} |')

    model = backbones['dinat_t']
    model.eval()
    floor = kernel_floor(model, x, args.repeats)
    with torch.no_grad():  # eager again, beside the floor: this machine's speed drifts over a run
        eager = alternating({'eager': partial(model, x)}, args.repeats)['eager']
    total = sum(seconds for _, seconds in floor.values())
    print('\nDiNAT-T forward 1x3x800x1216, the floor for a compiler that calls the same kernels (each call of one '
          'forward replayed alone): ' + ', '.join(f'{count} {kind} {seconds:.2f} s' for kind, (count, seconds)
                                                   in sorted(floor.items())) +
          f'; together {total:.2f} s = {total / eager:.2f}x the eager forward ({eager:.2f} s, timed after it), '
          'the rest of the forward is what a compiler can fuse')

    cp = {flag: run_child('train_step', ['dinat_t', flag], args.threads, 1)['peak'] / 2**20 for flag in (False, True)}
    print(f'\nDiNAT-T training step (2x3x512x512) peak memory: {cp[False]:.0f} MiB, with_cp=True: {cp[True]:.0f} MiB')

    from dinat_mm.runner import bf16_features, cpu_bf16_support
    emulated = cpu_bf16_support()
    print(f'\nbfloat16 on this CPU: {"emulated (" + emulated + ")" if emulated else "native"}')
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
            # emulated bfloat16 is 8x slower here: one timed run is enough to say so
            bf16 = alternating({'bf16': partial(model, x)}, 1 if emulated else args.repeats)['bf16']
    error = max(((a.float() - b).abs().max() / b.abs().max()).item() for a, b in zip(low, ref))
    print(f'DiNAT-T backbone forward 1x3x800x1216 under bfloat16 autocast: {bf16:.2f} s '
          f'(fp32 {forward["dinat_t"]:.2f} s, bf16/fp32 {bf16 / forward["dinat_t"]:.2f}), '
          f'largest error relative to the output range {error:.3f}')
    if emulated:
        print('DiNAT-T Mask R-CNN inference under bfloat16 autocast: not run, bfloat16 is emulated on this CPU '
              '(its convolutions are the slowest part); tools/train.py refuses --amp here unless --amp force')
        return

    # The detector with backbone and neck under bfloat16 autocast, as tools/train.py --amp runs it
    # on CPU (mmcv's CPU nms/RoIAlign have no bfloat16 kernels, so the heads stay float32).
    predict = detectors['dinat_t']
    detector = predict.model
    with torch.no_grad():
        ref = detector.extract_feat(predict.inputs)
        detector.extract_feat = bf16_features(detector.extract_feat)
        low = detector.extract_feat(predict.inputs)
    det_bf16 = alternating({'bf16': predict}, args.repeats)['bf16']
    error = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(low, ref))
    print(f'DiNAT-T Mask R-CNN inference 800x1216 with backbone and neck under bfloat16 autocast: {det_bf16:.2f} s '
          f'(fp32 {infer["dinat_t"]:.2f} s), largest error of the FPN features relative to their range {error:.3f}')

# ---- the device tables (--device cuda|cpu) ----
