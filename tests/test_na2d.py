"""na2d against the brute-force float64 definition: outputs, all four gradients, argument checks."""
import random
import subprocess
import sys

import pytest
import torch

from dinat_mm.ops import na2d
from dinat_mm.ops import cpu_kernel, natten_backend
from tests.helpers.reference import na2d_brute, natten_window


def _inputs(B, heads, H, W, D, kernel, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    q, k, v = (torch.randn(B, heads, H, W, D, generator=g, dtype=dtype) for _ in range(3))
    rpb = torch.randn(heads, 2 * kh - 1, 2 * kw - 1, generator=g, dtype=dtype)
    return q, k, v, rpb


def _cases():
    rnd = random.Random(1234)
    cases = []
    for kernel in (3, 5, 7, 9, 11, 13):
        for dilation in (1, 2, 3):
            H = kernel * dilation + rnd.randint(0, 2 * dilation + 1)
            W = kernel * dilation + rnd.randint(0, 3 * dilation + 2)
            cases.append((H, W, kernel, dilation, rnd.random() < 0.5))
    # every dilation pair up to the size's maximum, odd and non-square sizes
    for dh in range(1, 23 // 3 + 1):
        for dw in range(1, 17 // 3 + 1):
            cases.append((23, 17, 3, (dh, dw), (dh + dw) % 2 == 0))
    cases += [(15, 9, (5, 3), (1, 2), True), (9, 21, (3, 7), (3, 1), False), (7, 7, 7, 1, True)]
    return cases


def test_window_rule_matches_known_natten_windows():
    # Hand-written from natten's rule: borders shift the window, they never shrink it.
    assert natten_window(5, 3, 1).tolist() == [[0, 1, 2], [0, 1, 2], [1, 2, 3], [2, 3, 4], [2, 3, 4]]
    assert natten_window(7, 3, 2).tolist() == [[0, 2, 4], [1, 3, 5], [0, 2, 4], [1, 3, 5],
                                               [2, 4, 6], [1, 3, 5], [2, 4, 6]]


# The exact backends: 'torch' (the reference path), 'cpu' (the compiled kernel; built on this
# machine, so a failed build fails these tests rather than skipping them) and 'gather' (the form
# ONNX export lowers to). The Triton kernels have their own tests (test_triton.py).
EXACT_BACKENDS = ['torch', 'cpu', 'gather']


@pytest.mark.parametrize('backend', EXACT_BACKENDS)
@pytest.mark.parametrize('H,W,kernel,dilation,with_rpb', _cases())
def test_forward_and_gradients_match_brute_force(H, W, kernel, dilation, with_rpb, backend):
    q, k, v, rpb = _inputs(2, 2, H, W, 4, kernel, seed=H * 31 + W)
    rpb = rpb if with_rpb else None
    scale = 0.37 if (H + W) % 3 == 0 else None
    leaves = [t.requires_grad_() for t in (q, k, v) + ((rpb,) if with_rpb else ())]
    out = na2d(q, k, v, kernel, dilation, rpb=rpb, scale=scale, backend=backend)
    ref = na2d_brute(q, k, v, kernel, dilation, rpb=rpb, scale=scale)
    assert out.shape == q.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)
    grad_out = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, grad_out)
    want = torch.autograd.grad(ref, leaves, grad_out)
    for name, a, b in zip('qkv' + 'r', got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0, msg=f'gradient of {name}')


@pytest.mark.parametrize('backend', EXACT_BACKENDS)
@pytest.mark.parametrize('head_dim', [16, 32, 64, 24])  # the kernel's specialised sizes and a generic one
def test_strided_heads_like_the_backbone_match_brute_force(head_dim, backend):
    # The backbone passes q, k, v as views of one [B, H, W, 3, heads, D] projection.
    g = torch.Generator().manual_seed(head_dim)
    qkv = torch.randn(2, 30, 37, 3, 3, head_dim, generator=g, dtype=torch.float64)
    q, k, v = (t.requires_grad_() for t in qkv.permute(3, 0, 4, 1, 2, 5).unbind(0))
    rpb = torch.randn(3, 13, 13, generator=g, dtype=torch.float64, requires_grad=True)
    out = na2d(q, k, v, 7, (4, 5), rpb=rpb, backend=backend)
    ref = na2d_brute(q, k, v, 7, (4, 5), rpb=rpb)
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)
    grad_out = torch.randn(out.shape, generator=g, dtype=torch.float64)
    for name, a, b in zip('qkvr', torch.autograd.grad(out, (q, k, v, rpb), grad_out),
                          torch.autograd.grad(ref, (q, k, v, rpb), grad_out)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0, msg=f'gradient of {name}')


@pytest.mark.parametrize('backend', EXACT_BACKENDS)
@pytest.mark.parametrize('head_dim', [16, 32, 64])  # 32 and 64: what the backbone's heads run
def test_float32_is_within_1e5_of_float64(backend, head_dim):
    q, k, v, rpb = _inputs(1, 3, 19, 26, head_dim, 7)
    leaves = [t.float().requires_grad_() for t in (q, k, v, rpb)]
    out32 = na2d(*leaves[:3], 7, (2, 3), rpb=leaves[3], backend=backend)
    ref = na2d_brute(q, k, v, 7, (2, 3), rpb=rpb)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), ref, atol=1e-5, rtol=0)
    exact = [t.requires_grad_() for t in (q, k, v, rpb)]
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(head_dim), dtype=torch.float64)
    ref = na2d_brute(*exact[:3], 7, (2, 3), rpb=exact[3])
    for name, a, b in zip('qkvr', torch.autograd.grad(out32, leaves, grad_out.float()),
                          torch.autograd.grad(ref, exact, grad_out)):
        torch.testing.assert_close(a.double(), b, atol=1e-5 * max(1.0, b.abs().max().item()), rtol=0,
                                   msg=f'gradient of {name}')


@pytest.mark.parametrize('backend', EXACT_BACKENDS)
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_half_precision_forward_and_backward_within_one_rounding(dtype, backend):
    """Half precision is computed in float32 and rounded once to the dtype, so against the float64
    definition on the same (rounded) inputs every output and gradient is within half an ulp of the
    largest value, plus float32's error; the bound allowed is eps(dtype) of the largest value (two
    half-ulps). Computing in the half dtype itself would miss it by far (k*k terms rounded)."""
    q, k, v, rpb = _inputs(1, 2, 14, 15, 32, 5, dtype=torch.float32)
    low = [t.to(dtype).requires_grad_() for t in (q, k, v, rpb)]
    exact = [t.detach().double().requires_grad_() for t in low]
    out = na2d(*low[:3], 5, 2, rpb=low[3], backend=backend)
    ref = na2d_brute(*exact[:3], 5, 2, rpb=exact[3])
    assert out.dtype == dtype
    bound = torch.finfo(dtype).eps
    assert (out.double() - ref).abs().max() <= bound * ref.abs().max()
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    for name, a, b in zip('qkvr', torch.autograd.grad(out, low, grad_out),
                          torch.autograd.grad(ref, exact, grad_out.double())):
        assert a.dtype == dtype
        assert (a.double() - b).abs().max() <= bound * b.abs().max(), f'gradient of {name}'


# The C++ kernel splits work by (batch, head, row) and sums in a fixed order whatever the thread
# count; the PyTorch paths inherit the GEMM's thread-dependent blocking, so only repeated calls at
# one thread count are identical there.
@pytest.mark.parametrize('backend,thread_counts', [('cpu', (1, 2, 2, 1)), ('torch', (2, 2, 2)), ('gather', (2, 2, 2))])
def test_results_are_bitwise_identical_across_thread_counts_and_repeated_calls(backend, thread_counts):
    q, k, v, rpb = _inputs(2, 3, 29, 23, 32, 7, dtype=torch.float32, seed=5)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(6))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in thread_counts:
            torch.set_num_threads(n)
            leaves = [t.clone().requires_grad_() for t in (q, k, v, rpb)]
            out = na2d(*leaves[:3], 7, (3, 2), rpb=leaves[3], backend=backend)
            results.append([out.detach(), *torch.autograd.grad(out, leaves, grad_out)])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for name, a, b in zip(['output', 'query', 'key', 'value', 'rpb'], results[0], other):
            assert torch.equal(a, b), name


@pytest.mark.parametrize('backend', EXACT_BACKENDS)
@pytest.mark.parametrize('with_rpb', [False, True])
def test_gradcheck(with_rpb, backend):
    q, k, v, rpb = _inputs(1, 2, 7, 8, 3, 3)
    args = [q, k, v] + ([rpb] if with_rpb else [])
    for t in args:
        t.requires_grad_()

    def f(*a):
        return na2d(a[0], a[1], a[2], 3, (2, 1), rpb=a[3] if with_rpb else None, scale=0.8, backend=backend)

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7)


def test_gather_form_in_chunks_matches_brute_force():
    from dinat_mm.ops import gather_backend
    q, k, v, rpb = _inputs(2, 2, 13, 11, 4, 5)
    leaves = [t.requires_grad_() for t in (q, k, v, rpb)]
    ref = na2d_brute(q, k, v, 5, (2, 1), rpb=rpb)
    with gather_backend.chunked(17):  # 143 queries in 9 chunks, the last one short
        out = na2d(q, k, v, 5, (2, 1), rpb=rpb, backend='gather')
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)
    for a, b in zip(torch.autograd.grad(out.sum(), leaves), torch.autograd.grad(ref.sum(), leaves)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match='max_queries must be >= 1'):
        with gather_backend.chunked(0):
            pass


def test_attention_dropout_zero_in_eval_and_active_in_training():
    q, k, v, _ = _inputs(1, 2, 9, 9, 4, 3, dtype=torch.float32)
    torch.testing.assert_close(na2d(q, k, v, 3, 1, attn_drop=0.0), na2d_brute(q, k, v, 3, 1), atol=1e-6, rtol=0)
    torch.manual_seed(0)
    assert not torch.allclose(na2d(q, k, v, 3, 1, attn_drop=0.5), na2d(q, k, v, 3, 1))
    with torch.no_grad():  # the kernel has no dropout: 'auto' must not drop it silently
        assert not torch.allclose(na2d(q, k, v, 3, 1, attn_drop=0.5), na2d(q, k, v, 3, 1))
    with pytest.raises(RuntimeError, match="backend='cpu' cannot serve this call: .*dropout"):
        na2d(q, k, v, 3, 1, attn_drop=0.5, backend='cpu')


def test_auto_uses_the_cpu_kernel_and_falls_back_when_it_cannot_be_built(monkeypatch):
    q, k, v, rpb = _inputs(1, 2, 9, 9, 4, 3, dtype=torch.float32)
    directory = cpu_kernel.build_dir()
    assert cpu_kernel.why_not('cpu', 0.0) is None  # this machine compiles C++: the kernel must build
    assert cpu_kernel.build_dir() == directory and directory.is_dir()  # the cache key is stable
    calls = []
    real = cpu_kernel.na2d
    monkeypatch.setattr(cpu_kernel, 'na2d', lambda *a: calls.append(1) or real(*a))
    na2d(q, k, v, 3, rpb=rpb)
    assert calls == [1]
    monkeypatch.setattr(cpu_kernel, '_load', lambda: (None, 'no compiler here'))
    with pytest.raises(RuntimeError, match="backend='cpu' cannot serve this call: no compiler here"):
        na2d(q, k, v, 3, rpb=rpb, backend='cpu')
    torch.testing.assert_close(na2d(q, k, v, 3, rpb=rpb), na2d(q, k, v, 3, rpb=rpb, backend='torch'))
    assert calls == [1]


@pytest.mark.parametrize('kwargs,error,words', [
    (dict(kernel_size=4), ValueError, 'kernel_size must be odd'),
    (dict(kernel_size=1), ValueError, 'kernel_size must be odd'),
    (dict(kernel_size=(3, 3, 3)), TypeError, 'kernel_size'),
    (dict(dilation=0), ValueError, 'dilation must be >= 1'),
    (dict(dilation=3), ValueError, '12x14 (height x width) is smaller than kernel_size*dilation = 15x15'),
    (dict(kernel_size=(3, 5), dilation=(1, 3)), ValueError, 'kernel_size*dilation = 3x15'),
    (dict(rpb=torch.zeros(2, 5, 5)), ValueError, 'rpb must have shape [heads, 2*kh-1, 2*kw-1] = [2, 9, 9]'),
    (dict(backend='cuda'), ValueError, 'backend must be one of'),
])
def test_argument_errors_name_the_argument(kwargs, error, words):
    q, k, v, _ = _inputs(1, 2, 12, 14, 4, 5, dtype=torch.float32)
    args = dict(kernel_size=5, dilation=1)
    args.update(kwargs)
    with pytest.raises(error) as info:
        na2d(q, k, v, **args)
    assert words in str(info.value)


def test_tensor_errors():
    q = torch.randn(1, 2, 9, 9, 4)
    with pytest.raises(ValueError, match='query must be a 5-D tensor'):
        na2d(q[0], q[0], q[0], 3)
    with pytest.raises(TypeError, match='key must be a floating-point tensor'):
        na2d(q, q.long(), q, 3)
    with pytest.raises(ValueError, match='same shape'):
        na2d(q, q[..., :2], q, 3)


def test_natten_backend_is_an_error_where_natten_cannot_serve_and_auto_falls_back():
    q, k, v, rpb = _inputs(1, 2, 9, 9, 4, 3, dtype=torch.float32)
    reason = natten_backend.why_not('cpu', True)
    assert reason  # on CPU natten serves nothing: 0.21 has no CPU kernels, 0.17 does not import
    with pytest.raises(RuntimeError, match="backend='natten' cannot serve this call"):
        na2d(q, k, v, 3, rpb=rpb, backend='natten')
    torch.testing.assert_close(na2d(q, k, v, 3, rpb=rpb, backend='auto'), na2d_brute(q, k, v, 3, 1, rpb=rpb),
                               atol=1e-6, rtol=0)


def test_natten_fused_api_serves_only_cuda_without_rpb(monkeypatch):
    monkeypatch.setattr(natten_backend, '_natten', lambda: (object(), 'fused'))
    assert 'CPU' in natten_backend.why_not('cpu', False)
    assert natten_backend.why_not('cuda', False) is None
    assert 'relative positional bias' in natten_backend.why_not('cuda', True)


def _gather_windows(t, kernel_size, dilation):
    """[B, heads, H, W, D] -> [B, heads, H, W, kh*kw, D]: each query's window under natten's rule."""
    (kh, kw), (dh, dw) = kernel_size, dilation
    H, W = t.shape[2:4]
    r = natten_window(H, kh, dh)[:, None, :, None].expand(H, W, kh, kw)
    c = natten_window(W, kw, dw)[None, :, None, :].expand(H, W, kh, kw)
    return t[:, :, r, c].flatten(4, 5), r, c


class StandInNatten:
    """natten.functional's two APIs, written from their documented semantics on the definition."""

    @staticmethod
    def na2d(query, key, value, kernel_size, dilation, scale):  # >= 0.20: fused, heads-last, no rpb
        q, k, v = (t.permute(0, 3, 1, 2, 4) for t in (query, key, value))
        return na2d_brute(q, k, v, kernel_size, dilation, scale=scale).permute(0, 2, 3, 1, 4)

    @staticmethod
    def na2d_qk(query, key, kernel_size, dilation, rpb=None):  # 0.17: unscaled logits [.., kh*kw]
        k_nb, r, c = _gather_windows(key, kernel_size, dilation)
        logits = torch.einsum('bhijd,bhijnd->bhijn', query, k_nb)
        if rpb is not None:
            (kh, kw), (dh, dw) = kernel_size, dilation
            i = torch.arange(query.shape[2])[:, None, None, None]
            j = torch.arange(query.shape[3])[None, :, None, None]
            logits = logits + rpb[:, kh - 1 + (r - i) // dh, kw - 1 + (c - j) // dw].flatten(-2)
        return logits

    @staticmethod
    def na2d_av(attn, value, kernel_size, dilation):
        v_nb, _, _ = _gather_windows(value, kernel_size, dilation)
        return torch.einsum('bhijn,bhijnd->bhijd', attn, v_nb)


@pytest.mark.parametrize('api', ['fused', 'qk_av'])
def test_natten_delegation_through_a_stand_in_matches_the_definition(api, monkeypatch):
    monkeypatch.setattr(natten_backend, '_natten', lambda: (StandInNatten, api))
    q, k, v, rpb = _inputs(2, 3, 13, 17, 8, (5, 3))  # heads, H, W and D all differ: a wrong permute shows
    rpb = rpb if api == 'qk_av' else None
    out = natten_backend.na2d(q, k, v, (5, 3), (2, 4), rpb, 0.41)
    assert out.shape == q.shape
    torch.testing.assert_close(out, na2d_brute(q, k, v, (5, 3), (2, 4), rpb=rpb, scale=0.41), atol=1e-12, rtol=0)
    assert natten_backend.why_not('cuda', api == 'qk_av') is None  # what it would serve on CUDA
    assert 'dropout' in natten_backend.why_not('cuda', False, attn_drop=0.1)


def test_natten_api_detection(monkeypatch):
    import types
    natten_backend._natten.cache_clear()
    try:
        for attributes, want in ((('na2d_qk', 'na2d_av', 'na2d'), 'qk_av'), (('na2d',), 'fused'), ((), None)):
            package, functional = types.ModuleType('natten'), types.ModuleType('natten.functional')
            package.__version__, package.functional = '9.9', functional
            for name in attributes:
                setattr(functional, name, lambda *a: None)
            monkeypatch.setitem(sys.modules, 'natten', package)
            monkeypatch.setitem(sys.modules, 'natten.functional', functional)
            module, api = natten_backend._natten()
            natten_backend._natten.cache_clear()
            if want is None:
                assert module is None and api == 'natten 9.9 has no 2-D neighborhood attention API'
            else:
                assert module is functional and api == want
        monkeypatch.setitem(sys.modules, 'natten', None)  # import fails, as natten 0.17 does on torch 2.13
        module, api = natten_backend._natten()
        assert module is None and api.startswith('natten is not importable (')
    finally:
        natten_backend._natten.cache_clear()


STAGE1_PEAK = r'''
import torch
from dinat_mm.ops import na2d
def status_kib(field):
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(field + ':'))
torch.set_num_threads(2)
q, k, v = (torch.randn(1, 2, 200, 304, 32) for _ in range(3))
rpb = torch.randn(2, 13, 13)
open('/proc/self/clear_refs', 'w').write('5')  # restart the peak-RSS counter
base = status_kib('VmRSS')
for d in (1, 28):
    na2d(q, k, v, 7, d, rpb=rpb)
print((status_kib('VmHWM') - base) * 1024)
'''


@pytest.mark.slow
def test_stage1_shape_runs_well_under_1gb():
    """200x304 map, 2 heads, head_dim 32, k 7: a full N x N score matrix would need 14.8 GB."""
    out = subprocess.run([sys.executable, '-c', STAGE1_PEAK], capture_output=True, text=True, check=True)
    extra_bytes = int(out.stdout.strip().splitlines()[-1])
    assert 0 < extra_bytes < 0.5 * 2**30, f'na2d took {extra_bytes / 2**20:.0f} MiB beyond its inputs'
