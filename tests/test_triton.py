"""The Triton backend: its kernels run in Triton's interpreter on CPU tensors (the same sources
CUDA compiles) against the brute-force float64 definition; every kernel is compiled for real
sm_80 / sm_90 GPUs ahead of time; the dispatch; torch.library opcheck on every op."""
import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

from dinat_mm.ops import na2d, triton_backend

na2d_module = importlib.import_module('dinat_mm.ops.na2d')  # the module, not the function of that name
from tests.helpers.reference import na2d_brute

# (H, W, kernel, dilation, rpb, scale, head_dim): k 3/5/7, each size's largest dilation, odd and
# non-square maps, pair kernels and dilations, head_dim 16 and 32 (DiNAT's).
SLOW = pytest.mark.slow  # the larger maps take several seconds each in the interpreter
CASES = [
    (9, 11, 3, 1, True, None, 16),
    pytest.param(11, 13, 3, (3, 4), True, 0.37, 16, marks=SLOW),  # the largest dilations of an 11x13 map at k = 3
    (13, 10, 5, 2, False, None, 32),
    pytest.param(10, 15, 5, (2, 3), True, None, 16, marks=SLOW),  # the largest of a 10x15 map at k = 5
    (8, 13, 7, 1, True, 0.21, 32),
    pytest.param(15, 21, 7, (2, 3), True, None, 16, marks=SLOW),  # the largest of a 15x21 map at k = 7
    pytest.param(17, 9, (7, 3), (2, 3), False, 0.5, 16, marks=SLOW),
    pytest.param(20, 17, 3, (6, 5), True, None, 16, marks=SLOW),  # the largest of a 20x17 map at k = 3
]


def _inputs(B, heads, H, W, D, kernel, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    q, k, v = (torch.randn(B, heads, H, W, D, generator=g, dtype=dtype) for _ in range(3))
    return q, k, v, torch.randn(heads, 2 * kh - 1, 2 * kw - 1, generator=g, dtype=dtype)


def _grads(out, leaves, seed):
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.autograd.grad(out, leaves, grad_out.to(out.dtype))


def test_the_interpreter_is_on():
    # conftest sets TRITON_INTERPRET=1: otherwise these tests would not run the kernels at all
    assert triton_backend.interpreting()
    assert triton_backend.why_not('cpu', torch.float64, 16, (3, 3), 0.0) is None


@pytest.mark.parametrize('H,W,kernel,dilation,with_rpb,scale,head_dim', CASES)
def test_float64_outputs_and_gradients_match_brute_force(H, W, kernel, dilation, with_rpb, scale, head_dim):
    q, k, v, rpb = _inputs(2, 2, H, W, head_dim, kernel, seed=H * 7 + W)
    rpb = rpb if with_rpb else None
    leaves = [t.requires_grad_() for t in (q, k, v) + ((rpb,) if with_rpb else ())]
    out = na2d(q, k, v, kernel, dilation, rpb=rpb, scale=scale, backend='triton')
    ref = na2d_brute(q, k, v, kernel, dilation, rpb=rpb, scale=scale)
    assert out.shape == q.shape and out.dtype == torch.float64
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)
    for name, a, b in zip('qkvr', _grads(out, leaves, H), _grads(ref, leaves, H)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0, msg=f'gradient of {name}')


@pytest.mark.slow
@pytest.mark.parametrize('head_dim', [16, 32])
def test_strided_heads_like_the_backbone(head_dim):
    # the backbone passes q, k, v as views of one [B, H, W, 3, heads, D] projection
    g = torch.Generator().manual_seed(head_dim)
    qkv = torch.randn(2, 14, 19, 3, 2, head_dim, generator=g, dtype=torch.float64)
    q, k, v = (t.requires_grad_() for t in qkv.permute(3, 0, 4, 1, 2, 5).unbind(0))
    rpb = torch.randn(2, 9, 9, generator=g, dtype=torch.float64, requires_grad=True)
    out = na2d(q, k, v, 5, (2, 3), rpb=rpb, backend='triton')
    ref = na2d_brute(q, k, v, 5, (2, 3), rpb=rpb)
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=0)
    for name, a, b in zip('qkvr', _grads(out, (q, k, v, rpb), 1), _grads(ref, (q, k, v, rpb), 1)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0, msg=f'gradient of {name}')


@pytest.mark.slow
@pytest.mark.parametrize('head_dim', [16, 32])
def test_float32_is_within_1e5_of_float64(head_dim):
    q, k, v, rpb = _inputs(1, 2, 13, 18, head_dim, 7)
    leaves64 = [t.requires_grad_() for t in (q, k, v, rpb)]
    leaves32 = [t.detach().float().requires_grad_() for t in leaves64]
    out = na2d(*leaves32[:3], 7, (1, 2), rpb=leaves32[3], backend='triton')
    ref = na2d_brute(*leaves64[:3], 7, (1, 2), rpb=leaves64[3])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)
    for name, a, b in zip('qkvr', _grads(out, leaves32, 2), _grads(ref, leaves64, 2)):
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=0, msg=f'gradient of {name}')


@pytest.mark.parametrize('dtype', [pytest.param(torch.float16, marks=SLOW), torch.bfloat16])
def test_half_precision_within_its_rounding(dtype):
    """Inputs in half precision, accumulation in float32. Against the definition on the same
    (rounded) inputs in float64, what remains is the rounding of the probabilities and the logit
    gradients to the input dtype before their tl.dot, and of the results: a few units of the
    dtype's epsilon relative to each result's largest magnitude."""
    q, k, v, rpb = _inputs(1, 2, 12, 15, 16, 5, dtype=torch.float32, seed=3)
    low = [t.to(dtype).requires_grad_() for t in (q, k, v, rpb)]
    exact = [t.detach().double().requires_grad_() for t in low]
    out = na2d(*low[:3], 5, 2, rpb=low[3], backend='triton')
    ref = na2d_brute(*exact[:3], 5, 2, rpb=exact[3])
    assert out.dtype == dtype
    eps = torch.finfo(dtype).eps
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    got = torch.autograd.grad(out, low, grad_out.to(dtype))
    want = torch.autograd.grad(ref, exact, grad_out.to(dtype).double())
    for name, a, b in zip(['out', 'dq', 'dk', 'dv', 'drpb'], (out,) + got, (ref,) + want):
        assert a.dtype == dtype
        error = (a.double() - b).abs().max().item() / b.abs().max().item()
        assert error < 2 * eps, f'{name}: error {error:.2e} of its range, epsilon {eps:.1e}'


@pytest.mark.slow
def test_rpb_gradient_is_deterministic():
    q, k, v, rpb = _inputs(2, 2, 16, 16, 16, 3, dtype=torch.float32, seed=5)
    leaves = [t.requires_grad_() for t in (q, k, v, rpb)]
    grads = [_grads(na2d(q, k, v, 3, 2, rpb=rpb, backend='triton'), leaves, 6) for _ in range(2)]
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_the_neighbor_gradient_reduction_against_a_loop():
    # rpb_gradient sums ds[b, h, i, j, t, u] into rpb[h, first_bias_row[i] + t, first_bias_col[j] + u]
    g = torch.Generator().manual_seed(0)
    ds = torch.randn(2, 3, 5, 6, 3, 3, generator=g, dtype=torch.float64)
    first_rows, first_cols = torch.tensor([2, 2, 1, 0, 0]), torch.tensor([2, 2, 1, 1, 0, 0])
    want = torch.zeros(3, 5, 5, dtype=torch.float64)
    for i in range(5):
        for j in range(6):
            for t in range(3):
                for u in range(3):
                    want[:, first_rows[i] + t, first_cols[j] + u] += ds[:, :, i, j, t, u].sum(0)
    torch.testing.assert_close(triton_backend.rpb_gradient(ds, first_rows, first_cols, (3, 3)), want)


@pytest.mark.slow
@pytest.mark.parametrize('op,with_rpb', [('na2d_triton_forward', True), ('na2d_triton_forward', False)])
def test_opcheck(op, with_rpb):
    q, k, v, rpb = _inputs(1, 2, 7, 9, 16, 3, dtype=torch.float32)
    args = [t.requires_grad_() for t in (q, k, v)] + [rpb.requires_grad_() if with_rpb else None]
    torch.library.opcheck(getattr(torch.ops.dinat_mm, op).default, (*args, [3, 3], [2, 3], 0.3))


def test_opcheck_backward_op():
    q, k, v, rpb = _inputs(1, 2, 7, 9, 16, 3, dtype=torch.float32)
    out, lse = torch.ops.dinat_mm.na2d_triton_forward(q, k, v, rpb, [3, 3], [1, 2], 0.3)
    torch.library.opcheck(torch.ops.dinat_mm.na2d_triton_backward.default,
                          (torch.randn_like(out), q, k, v, rpb, out, lse, [3, 3], [1, 2], 0.3, True))


# ---- dispatch, decided without a GPU ----

def test_auto_picks_triton_on_cuda_when_triton_and_a_gpu_are_present(monkeypatch):
    choose = na2d_module.choose_backend
    assert choose('auto', 'cuda', torch.float32, 32, (7, 7), True, 0.0) == 'torch'  # no GPU here
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    for has_rpb in (True, False):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            assert choose('auto', 'cuda', dtype, 32, (7, 7), has_rpb, 0.0) == 'triton'
    assert choose('auto', 'cuda', torch.float32, 256, (7, 7), True, 0.0) == 'torch'  # head_dim > 128
    assert choose('auto', 'cuda', torch.float32, 32, (7, 7), True, 0.1) == 'torch'  # attention dropout
    # on CPU, auto keeps the C++ kernel even with the interpreter on
    assert choose('auto', 'cpu', torch.float32, 32, (7, 7), True, 0.0) == 'cpu'
    monkeypatch.setattr(triton_backend, '_triton', lambda: (None, 'triton is not importable (test)'))
    assert choose('auto', 'cuda', torch.float32, 32, (7, 7), True, 0.0) == 'torch'
    with pytest.raises(RuntimeError, match="backend='triton' cannot serve this call: triton is not importable"):
        choose('triton', 'cuda', torch.float32, 32, (7, 7), True, 0.0)


def test_auto_on_cuda_takes_natten_only_where_triton_cannot_serve(monkeypatch):
    from dinat_mm.ops import natten_backend
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(natten_backend, '_natten', lambda: (object(), 'fused'))
    choose = na2d_module.choose_backend
    assert choose('auto', 'cuda', torch.float16, 32, (7, 7), False, 0.0) == 'triton'
    monkeypatch.setattr(triton_backend, '_triton', lambda: (None, 'no triton'))
    assert choose('auto', 'cuda', torch.float16, 32, (7, 7), False, 0.0) == 'natten'
    assert choose('auto', 'cuda', torch.float16, 32, (7, 7), True, 0.0) == 'torch'  # natten has no rpb


def test_triton_backend_errors_give_the_reason(monkeypatch):
    q, k, v, rpb = _inputs(1, 2, 9, 9, 16, 3, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="backend='triton' cannot serve this call: .*dropout"):
        na2d(q, k, v, 3, rpb=rpb, backend='triton', attn_drop=0.1)
    with pytest.raises(RuntimeError, match='head_dim <= 128'):
        na2d(*(torch.randn(1, 1, 9, 9, 160) for _ in range(3)), 3, backend='triton')
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    with pytest.raises(RuntimeError, match='CPU tensors only with TRITON_INTERPRET=1'):
        na2d(q, k, v, 3, rpb=rpb, backend='triton')


def test_na2d_routes_the_triton_choice_to_the_triton_op(monkeypatch):
    calls = []
    real = triton_backend.na2d
    monkeypatch.setattr(triton_backend, 'na2d', lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(na2d_module, 'choose_backend', lambda *a: 'triton')
    q, k, v, rpb = _inputs(1, 2, 9, 10, 16, 3)
    torch.testing.assert_close(na2d(q, k, v, 3, 2, rpb=rpb), na2d_brute(q, k, v, 3, 2, rpb=rpb), atol=1e-9, rtol=0)
    assert calls == [1]


# ---- ahead-of-time compilation for real GPUs, without one ----

COMPILE = r'''
import json, sys, torch
from dinat_mm.ops import triton_backend as tb
configs = json.loads(sys.argv[1])
out = []
for kernel, capability, dtype, head_dim, k, has_rpb in configs:
    compiled = tb.compile_for(kernel, capability, getattr(torch, dtype), head_dim, (k, k), has_rpb)
    out.append([kernel, capability, dtype, head_dim, k, has_rpb, compiled.metadata.shared,
                len(compiled.asm['cubin'])])
print(json.dumps(out))
'''
# Largest dynamic shared memory of one block: A100 (sm_80) 163 KiB, H100/H200 (sm_90) 227 KiB.
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


def _compile_configs():
    configs = [[kernel, capability, dtype, head_dim, 7, True]
               for kernel in triton_backend.KERNELS for capability in (80, 90)
               for dtype in ('float32', 'float16', 'bfloat16') for head_dim in (32, 64)]
    # the other ends of what dispatch can choose: no rpb, the widest key block (k = 13), head_dim 128
    configs += [[kernel, capability, 'bfloat16', 128, 13, False]
                for kernel in triton_backend.KERNELS for capability in (80, 90)]
    configs += [[kernel, capability, 'float64', 32, 7, True]  # float64 too, which dispatch accepts
                for kernel in triton_backend.KERNELS for capability in (80, 90)]
    return configs


@pytest.mark.slow
def test_every_kernel_compiles_for_sm80_and_sm90_within_shared_memory():
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    configs = _compile_configs()
    run = subprocess.run([sys.executable, '-c', COMPILE, json.dumps(configs)], capture_output=True, text=True,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(results) == len(configs)
    for kernel, capability, dtype, head_dim, k, has_rpb, shared, cubin in results:
        assert cubin > 0, (kernel, capability, dtype)
        assert 0 < shared <= SHARED_LIMIT[capability], (kernel, capability, dtype, head_dim, shared)
