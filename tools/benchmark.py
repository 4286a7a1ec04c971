"""Benchmarks: na2d at the DiNAT-T stage shapes, and DiNAT-T beside mmdet's Swin-T.

``tools/benchmark.py [--threads 2] [--repeats 5]``: the CPU tables (for README), with the machine's
measured fp32 GEMM rate. Peers run alternately in one process, after warm-up, and the median is
reported; each peak memory is the resident-set growth of a fresh process running only that workload.

``tools/benchmark.py --device cuda``: the GPU tables, in one run (under 8 minutes on one H200):
na2d forward and forward + backward at the stage shapes of a 2x3x800x1216 batch for the Triton
kernels, the torch path, natten's fused kernels (no rpb; where natten's CUDA build is installed) and
SDPA self-attention of the same token count; DiNAT-T vs Swin-T backbones, fp32 and bf16 autocast;
a Mask R-CNN training step at batch 2; peak device memory of each. ``--device cpu`` runs the same
code on CPU (with ``--image H W`` to shrink it, and TRITON_INTERPRET=1 for the Triton rows), so the
command is tested before a GPU is lent.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
STAGES = [  # DiNAT-T on an 800x1216 image: (height, width, heads, dilation of the sparse layer)
    (200, 304, 2, 28), (100, 152, 4, 14), (50, 76, 8, 7), (25, 38, 16, 3)]
HEAD_DIM, KERNEL = 32, 7
DINAT_T_MASKRCNN = dict(
    type='DiNAT', embed_dim=64, mlp_ratio=3.0, depths=[3, 4, 18, 5], num_heads=[2, 4, 8, 16],
    kernel_size=7, drop_path_rate=0.0,
    dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]])
SWIN_T = dict(type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
              window_size=7, mlp_ratio=4, drop_path_rate=0.0, out_indices=(0, 1, 2, 3))
DETECTORS = dict(dinat_t=str(REPO / 'configs/maskrcnn_dinat_tiny_coco.py'),
                 swin_t='swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')  # in mmdet's installed configs
LABELS = dict(dinat_t='DiNAT-T', swin_t='Swin-T')


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternating(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, run in turn after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n**3 / min(_timed(lambda: a @ b) for _ in range(repeats)) / 1e9


def build_backbone(name: str, device: str = 'cpu', **overrides) -> torch.nn.Module:
    import dinat_mm  # noqa: F401  (registers DiNAT)
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    return MODELS.build(dict(DINAT_T_MASKRCNN if name == 'dinat_t' else SWIN_T, **overrides)).to(device)


def build_detector(name: str, device: str = 'cpu', images=((800, 1216),), train: bool = False):
    """The whole Mask R-CNN of the config, random weights, and a callable: with ``train`` a
    training step (loss, backward, SGD step) on ``images`` with random instances, else prediction
    in eval mode. The callable carries the model and the preprocessed inputs."""
    import dinat_mm  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    import mmdet
    path = DETECTORS[name] if name == 'dinat_t' else str(Path(mmdet.__file__).parent / '.mim/configs' / DETECTORS[name])
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device)
    # mmdet's initialisation of the heads (as at the start of training): near-zero box deltas, so
    # both detectors propose boxes near the same anchors and RoIAlign (whose cost grows with box
    # size) does comparable work; with PyTorch's default init the proposals differ at random.
    from mmengine.logging import MMLogger
    mm_logger = MMLogger.get_current_instance()
    level = mm_logger.level
    mm_logger.setLevel(logging.ERROR)  # init_weights logs every parameter (and Swin-T's lack of a checkpoint)
    try:
        model.init_weights()
    finally:
        mm_logger.setLevel(level)
    if train:
        model.train()
        data = model.data_preprocessor(demo_mm_inputs(len(images), [(3, *hw) for hw in images],
                                                      num_items=[3] * len(images), with_mask=True), True)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

        def step():
            loss, _ = model.parse_losses(model(**data, mode='loss'))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        step.model, step.inputs = model, data['inputs']
        return step
    model.eval()  # (mmdet's SwinTransformer.train() returns None: never chain it)
    data = model.data_preprocessor(demo_mm_inputs(len(images), [(3, *hw) for hw in images],
                                                  num_items=[1] * len(images)), False)

    def predict():
        with torch.no_grad():
            model(**data, mode='predict')
    predict.model, predict.inputs = model, data['inputs']
    return predict


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


def child(kind: str, spec, repeats: int) -> dict:
    """Run one workload in this (fresh) process; report median time and resident-set growth."""
    if kind == 'na2d':
        from dinat_mm.ops import na2d
        height, width, heads, dilation, backend = spec
        # q, k, v as the backbone passes them: views of one [B, H, W, 3, heads, D] projection
        qkv = torch.randn(1, height, width, 3, heads, HEAD_DIM)
        q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)
        rpb = torch.randn(heads, 2 * KERNEL - 1, 2 * KERNEL - 1)
        fn = partial(na2d, q, k, v, KERNEL, dilation, rpb=rpb, backend=backend)
        base = _reset_peak()
        with torch.no_grad():
            times = [_timed(fn) for _ in range(repeats + 1)][1:]
    elif kind == 'forward':  # backbone forward, 1x3x800x1216
        model = build_backbone(spec)
        model.eval()
        x = torch.randn(1, 3, 800, 1216)
        base = _reset_peak()
        with torch.no_grad():
            times = [_timed(lambda: model(x))]
    elif kind == 'onnx':  # DiNAT-T backbone in onnxruntime, 1x3x800x1216, spec = queries per gather chunk
        import tempfile

        import onnxruntime

        import export  # tools/export.py
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
            base = _reset_peak()
            times = [_timed(lambda: session.run(None, feed)) for _ in range(repeats + 1)][1:]
            size = Path(path).stat().st_size
        return dict(time=statistics.median(times), peak=_status_kib('VmHWM') * 1024 - base, size=size,
                    export_time=export_time)
    else:  # 'train_step': backbone forward + backward, 2x3x512x512, spec = [name, with_cp]
        name, with_cp = spec
        model = build_backbone(name, with_cp=with_cp)
        model.train()
        x = torch.randn(2, 3, 512, 512)
        base = _reset_peak()
        times = [_timed(lambda: sum(o.mean() for o in model(x)).backward())]
    return dict(time=statistics.median(times), peak=_status_kib('VmHWM') * 1024 - base)


def run_child(kind: str, spec, threads: int, repeats: int) -> dict:
    out = subprocess.run([sys.executable, __file__, '--child', kind, json.dumps(spec),
                          '--threads', str(threads), '--repeats', str(repeats)],
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f'benchmark child {kind} {spec} failed:\n{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ratio_rows(times: dict) -> str:
    return f'{times["dinat_t"]:.2f} | {times["swin_t"]:.2f} | {times["dinat_t"] / times["swin_t"]:.2f}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', choices=('cuda', 'cpu'),
                        help='run the device tables (GPU benchmark) on this device instead of the CPU tables')
    parser.add_argument('--image', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'),
                        help='with --device: image size (batch 2); stage shapes follow it')
    parser.add_argument('--child', nargs=2, metavar=('KIND', 'SPEC'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]), args.repeats)))
        return
    if args.device:
        device_suite(args)
        return

    gemm = gemm_rate()
    print(f'# dinat_mm CPU benchmark, {datetime.date.today()}, {platform.machine()}, '
          f'torch {torch.__version__}, {args.threads} threads, median of {args.repeats}')
    print(f'\nfp32 GEMM (2048^3): {gemm:.0f} GFLOP/s\n')
    print('| na2d, k=7, head_dim 32, rpb, forward | time (ms) | useful GFLOP/s | of GEMM rate | peak memory (MiB) '
          '| pure-PyTorch path (ms) |')
    print('|---|---|---|---|---|---|')
    for height, width, heads, dilation in STAGES:
        for d in (1, dilation):
            r = run_child('na2d', [height, width, heads, d, 'auto'], args.threads, args.repeats)
            ref = run_child('na2d', [height, width, heads, d, 'torch'], args.threads, args.repeats)
            rate = na2d_stage_flops(height, width, heads) / r['time'] / 1e9
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
    print(f'\nDiNAT-T forward 1x3x800x1216, the floor for a compiler that calls the same kernels (each call of one '
          f'forward replayed alone): ' + ', '.join(f'{count} {kind} {seconds:.2f} s' for kind, (count, seconds)
                                                   in sorted(floor.items())) +
          f'; together {total:.2f} s = {total / eager:.2f}x the eager forward ({eager:.2f} s, timed after it), '
          f'leaving {0.8 - total / eager:+.2f}x eager under the 0.8x target for everything else')

    cp = {flag: run_child('train_step', ['dinat_t', flag], args.threads, 1)['peak'] / 2**20 for flag in (False, True)}
    print(f'\nDiNAT-T training step (2x3x512x512) peak memory: {cp[False]:.0f} MiB, with_cp=True: {cp[True]:.0f} MiB')

    from dinat_mm.engine import bf16_features, cpu_bf16_support
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
              '(one FPN 3x3 convolution took 322 s against 0.9 s in float32 on an AVX2 machine); '
              'tools/train.py refuses --amp here unless --amp force')
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

def _synced(fn, device: str):
    """fn, then wait for the device: host timers then measure the work, not its launch."""
    def run():
        fn()
        if device == 'cuda':
            torch.cuda.synchronize()
    return run


def _peak_bytes(fn, device: str) -> int:
    """Memory one call of fn needs beyond what is allocated before it: the CUDA allocator's peak,
    or on CPU the resident-set growth of this process (approximate: malloc keeps freed pages)."""
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    base = _reset_peak()
    fn()
    return max(0, _status_kib('VmHWM') * 1024 - base)


def stage_shapes(height: int, width: int):
    """DiNAT-T's level sizes for an image (two stride-2 convolutions, then one per level), its heads,
    and each level's largest detection dilation that fits the map at k = 7."""
    h, w = -(-(-(-height // 2)) // 2), -(-(-(-width // 2)) // 2)
    shapes = []
    for (_, _, heads, dilation) in STAGES:
        shapes.append((h, w, heads, max(1, min(dilation, h // KERNEL, w // KERNEL))))
        h, w = -(-h // 2), -(-w // 2)
    return shapes


def _na2d_workloads(batch, height, width, heads, dilation, dtype, device):
    """{name: (forward, forward + backward)} or {name: reason} for each peer at one shape."""
    from dinat_mm.ops import na2d
    from dinat_mm.ops.na2d import why_not
    import torch.nn.functional as F
    qkv = torch.randn(batch, height, width, 3, heads, HEAD_DIM, device=device, dtype=dtype, requires_grad=True)
    q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)  # as the backbone passes them
    rpb = torch.randn(heads, 2 * KERNEL - 1, 2 * KERNEL - 1, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(batch, heads, height, width, HEAD_DIM, device=device, dtype=dtype)
    tokens = [t.detach().reshape(batch, heads, height * width, HEAD_DIM).requires_grad_() for t in (q, k, v)]
    work = {}
    for name, with_rpb in (('triton', True), ('torch', True), ('natten', False)):
        reason = why_not(name, device, dtype, HEAD_DIM, (KERNEL, KERNEL), with_rpb, 0.0)
        if reason:
            work[name] = reason
            continue
        call = partial(na2d, q, k, v, KERNEL, dilation, rpb=rpb if with_rpb else None, backend=name)
        work[name] = (lambda call=call: (torch.no_grad()(call))(),
                      lambda call=call: call().backward(grad))
    sdpa = partial(F.scaled_dot_product_attention, *tokens)
    work['sdpa'] = (lambda: torch.no_grad()(sdpa)(), lambda: sdpa().backward(grad.reshape(tokens[0].shape)))
    return work


def _peer_row(label: str, calls: dict, device: str, repeats: int) -> None:
    """One table row: DiNAT-T and Swin-T times (ms, alternating), their ratio and peak memories."""
    fns = {n: _synced(fn, device) for n, fn in calls.items()}
    times = alternating(fns, repeats)
    peaks = {n: _peak_bytes(fn, device) / 2**20 for n, fn in fns.items()}
    print(f'| {label} | {times["dinat_t"] * 1e3:.1f} | {times["swin_t"] * 1e3:.1f} '
          f'| {times["dinat_t"] / times["swin_t"]:.2f} | {peaks["dinat_t"]:.0f} | {peaks["swin_t"]:.0f} |')


def device_suite(args) -> None:
    device = args.device
    if device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    dtype = torch.bfloat16 if device == 'cuda' else torch.float32
    batch, (height, width) = 2, args.image
    name = torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or platform.machine()
    print(f'# dinat_mm device benchmark, {datetime.date.today()}, {device}: {name}, torch {torch.__version__}, '
          f'batch {batch}x3x{height}x{width}, median of {args.repeats} after warm-up, peers alternating')
    print(f'\n| na2d, k={KERNEL}, head_dim {HEAD_DIM}, {str(dtype)[6:]}, batch {batch} | peer | forward (ms) '
          f'| fwd+bwd (ms) | fwd+bwd useful TFLOP/s | peak memory fwd+bwd (MiB) |')
    print('|---|---|---|---|---|---|')
    ratios = []
    for h, w, heads, sparse in stage_shapes(height, width):
        if min(h, w) < KERNEL:
            print(f'| {h}x{w}, {heads} heads | skipped: the map is smaller than the kernel | | | | |')
            continue
        for dilation in sorted({1, sparse}):
            work = _na2d_workloads(batch, h, w, heads, dilation, dtype, device)
            ready = {n: fns for n, fns in work.items() if not isinstance(fns, str)}
            fwd = alternating({n: _synced(f[0], device) for n, f in ready.items()}, args.repeats)
            both = alternating({n: _synced(f[1], device) for n, f in ready.items()}, args.repeats)
            useful = {n: 2.5 * 2 * 2 * batch * heads * HEAD_DIM * h * w * (h * w if n == 'sdpa' else KERNEL**2)
                      for n in ready}  # QK and AV; a backward does 2.5 times a forward's work (FlashAttention's count)
            for n, fns in work.items():
                label = f'{h}x{w}, {heads} heads, dilation {dilation}'
                if isinstance(fns, str):
                    print(f'| {label} | {n} | n/a: {fns} | | | |')
                    continue
                peak = _peak_bytes(_synced(fns[1], device), device)
                print(f'| {label} | {n}{" (no rpb)" if n == "natten" else ""} | {fwd[n] * 1e3:.2f} '
                      f'| {both[n] * 1e3:.2f} | {useful[n] / both[n] / 1e12:.3g} | {peak / 2**20:.0f} |')
            if 'triton' in ready:
                rate = {n: useful[n] / both[n] for n in ready}
                ratios.append((f'{h}x{w} d{dilation}', both['triton'] / both['natten'] if 'natten' in ready else None,
                               rate['triton'] / rate['sdpa']))
    if ratios:
        print('\nTargets, fwd+bwd: Triton (rpb) / natten fused (no rpb) <= 1.5; else Triton useful rate / SDPA '
              "self-attention's >= 1/3")
        for label, vs_natten, vs_sdpa in ratios:
            print(f'- {label}: Triton/natten time {"n/a" if vs_natten is None else f"{vs_natten:.2f}"}, '
                  f'Triton/SDPA useful rate {vs_sdpa:.2f}')

    x = torch.randn(batch, 3, height, width, device=device)
    print('\n| backbone, DiNAT-T vs Swin-T (random weights) | DiNAT-T (ms) | Swin-T (ms) | ratio '
          '| DiNAT-T peak (MiB) | Swin-T peak (MiB) |')
    print('|---|---|---|---|---|---|')
    backbones = {n: build_backbone(n, device) for n in LABELS}
    precisions = (('fp32', None), ('bf16 autocast', torch.bfloat16))
    for precision, autocast in precisions:
        for mode in ('forward', 'forward + backward'):
            def call(m, mode=mode, autocast=autocast):
                with torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
                    if mode == 'forward':
                        with torch.no_grad():
                            return m(x)
                    return sum(o.float().mean() for o in m(x)).backward()
            for m in backbones.values():
                m.train() if mode != 'forward' else m.eval()  # not chained: Swin's train() returns None
            _peer_row(f'{mode}, {precision}', {n: partial(call, m) for n, m in backbones.items()}, device,
                      args.repeats)
    del backbones

    print(f'\n| Mask R-CNN training step, batch {batch} at {height}x{width} | DiNAT-T (ms) | Swin-T (ms) | ratio '
          '| DiNAT-T peak (MiB) | Swin-T peak (MiB) |')
    print('|---|---|---|---|---|---|')
    try:
        steps = {n: build_detector(n, device, [(height, width)] * batch, train=True) for n in DETECTORS}
    except Exception as exc:  # e.g. an mmcv without this device's RoIAlign/nms
        print(f'| n/a: the detectors could not be built on {device} ({type(exc).__name__}: {exc}) | | | | | |')
        return
    for precision, autocast in precisions[:2 if device == 'cuda' else 1]:  # mmcv's CPU ops have no bf16
        def step(fn, autocast=autocast):
            with torch.autocast(device, dtype=autocast or torch.float32, enabled=autocast is not None):
                fn()
        _peer_row(precision, {n: partial(step, fn) for n, fn in steps.items()}, device, args.repeats)


if __name__ == '__main__':
    main()
