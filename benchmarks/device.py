"""The device tables (``--device cuda``; ``--device cpu`` runs the same code, with ``--image H W``
to shrink it and TRITON_INTERPRET=1 for the Triton rows, so the command is tested before a GPU is
lent): na2d forward and forward + backward at DiNAT-T's level shapes of a batch of 2 for the Triton
kernels, the torch path, natten's fused kernels (no rpb; where natten's CUDA build is installed)
and SDPA self-attention of the same token count; DiNAT-T vs Swin-T backbones, fp32 and bf16
autocast; a Mask R-CNN training step; peak device memory of each."""
from __future__ import annotations

import datetime
import platform
from functools import partial

import torch

from .workloads import (DETECTORS, LABELS, alternating, build_backbone, build_detector, kernel_size, level_shapes,
                        reset_peak, status_kib)

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
    base = reset_peak()
    fn()
    return max(0, status_kib('VmHWM') * 1024 - base)


def _na2d_workloads(batch, height, width, heads, head_dim, dilation, dtype, device):
    """{name: (forward, forward + backward)} or {name: reason} for each peer at one shape."""
    from dinat_mm.ops import na2d
    from dinat_mm.ops.na2d import why_not
    import torch.nn.functional as F
    kernel = kernel_size()
    qkv = torch.randn(batch, height, width, 3, heads, head_dim, device=device, dtype=dtype, requires_grad=True)
    q, k, v = qkv.permute(3, 0, 4, 1, 2, 5).unbind(0)  # as the backbone passes them
    rpb = torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(batch, heads, height, width, head_dim, device=device, dtype=dtype)
    tokens = [t.detach().reshape(batch, heads, height * width, head_dim).requires_grad_() for t in (q, k, v)]
    work = {}
    for name, with_rpb in (('triton', True), ('torch', True), ('natten', False)):
        reason = why_not(name, device, dtype, head_dim, (kernel, kernel), with_rpb, 0.0)
        if reason:
            work[name] = reason
            continue
        call = partial(na2d, q, k, v, kernel, dilation, rpb=rpb if with_rpb else None, backend=name)
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
    k = kernel_size()
    print(f'\n| na2d, k={k}, {str(dtype)[6:]}, batch {batch} | peer | forward (ms) '
          f'| fwd+bwd (ms) | fwd+bwd useful TFLOP/s | peak memory fwd+bwd (MiB) |')
    print('|---|---|---|---|---|---|')
    ratios = []
    for h, w, heads, head_dim, sparse in level_shapes(height, width):
        if min(h, w) < k:
            print(f'| {h}x{w}, {heads} heads | skipped: the map is smaller than the kernel | | | | |')
            continue
        for dilation in sorted({1, sparse}):
            work = _na2d_workloads(batch, h, w, heads, head_dim, dilation, dtype, device)
            ready = {n: fns for n, fns in work.items() if not isinstance(fns, str)}
            fwd = alternating({n: _synced(f[0], device) for n, f in ready.items()}, args.repeats)
            both = alternating({n: _synced(f[1], device) for n, f in ready.items()}, args.repeats)
            useful = {n: 2.5 * 2 * 2 * batch * heads * head_dim * h * w * (h * w if n == 'sdpa' else k**2)
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
        print('\nRatios, fwd+bwd: Triton (rpb) time / natten fused (no rpb) time; Triton useful rate / SDPA '
              "self-attention's")
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
