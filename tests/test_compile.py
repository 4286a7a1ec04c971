"""na2d's kernels as torch.library ops: opcheck on the CPU kernel's ops, and the DiNAT-T backbone
under torch.compile(fullgraph=True) (no graph break) against eager and float64."""
import copy

import pytest
import torch

from dinat_mm import DiNAT

# DiNAT-T (depths 3-4-18-5, heads 2-4-8-16, head_dim 32) with dilations for a 128x128 input
DINAT_T_128 = dict(arch='tiny', drop_path_rate=0.0,
                   dilations=[[1, 8, 1], [1, 4, 1, 2], [1, 2, 1, 2, 1, 2] * 3, [1, 1, 1, 1, 1]])
# Eight layers, dilated and not, and a last level smaller than its window (the padding path) at
# 128x128: what inductor must fuse, at a fraction of DiNAT-T's compile time.
SMALL_128 = dict(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], kernel_size=7, drop_path_rate=0.0,
                 dilations=[[1, 4], [1, 2], [1, 1], [1, 1]])


def _inputs(dtype=torch.float32, with_rpb=True):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 7, 9, 16, generator=g, dtype=dtype, requires_grad=True) for _ in range(3))
    rpb = torch.randn(2, 5, 5, generator=g, dtype=dtype, requires_grad=True) if with_rpb else None
    return q, k, v, rpb


@pytest.mark.parametrize('with_rpb', [True, False])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_opcheck_cpu_forward(dtype, with_rpb):
    q, k, v, rpb = _inputs(dtype, with_rpb)
    torch.library.opcheck(torch.ops.dinat_mm.na2d_cpu_forward.default, (q, k, v, rpb, [3, 3], [1, 2], 0.3, True))
    torch.library.opcheck(torch.ops.dinat_mm.na2d_cpu_forward.default,
                          (q.detach(), k.detach(), v.detach(), None, [3, 3], [2, 1], 0.3, False))


def test_opcheck_cpu_backward():
    q, k, v, rpb = (t.detach() for t in _inputs())
    out, attn = torch.ops.dinat_mm.na2d_cpu_forward(q, k, v, rpb, [3, 3], [2, 2], 0.3, True)
    for has_rpb in (True, False):
        torch.library.opcheck(torch.ops.dinat_mm.na2d_cpu_backward.default,
                              (torch.randn_like(out), q, k, v, attn, has_rpb, [3, 3], [2, 2], 0.3))


def test_backward_without_saved_weights_is_an_error():
    q, k, v, rpb = _inputs()
    out, _ = torch.ops.dinat_mm.na2d_cpu_forward(q, k, v, rpb, [3, 3], [1, 1], 0.3, False)
    with pytest.raises(RuntimeError, match='no attention weights were saved'):
        out.sum().backward()


def _graph_ops(model, x):
    """The call targets of the graph dynamo hands to its backend; fullgraph=True fails on a break."""
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(node.target) for node in gm.graph.nodes if node.op == 'call_function')
        return gm.forward

    torch._dynamo.reset()
    torch.compile(model, fullgraph=True, backend=backend)(x)
    return seen


@pytest.mark.slow
def test_backbone_traces_in_one_graph_with_the_kernel_as_one_op():
    model = DiNAT(**DINAT_T_128).eval()
    ops = _graph_ops(model, torch.randn(1, 3, 128, 128))
    assert ops.count('dinat_mm.na2d_cpu_forward.default') == 3 + 4 + 18 + 5  # one per layer


@pytest.mark.slow
def test_compiled_backbone_matches_eager_to_float32_rounding():
    """Inductor's fused code against eager, both measured against the float64 model: the compiled
    model's deviation from float64 stays within a small multiple of eager float32's own."""
    torch.manual_seed(0)
    model = DiNAT(**SMALL_128)
    model.init_weights()
    model.train()
    model64 = copy.deepcopy(model).double()
    x = torch.randn(1, 3, 128, 128)

    def run(m, inp):
        inp = inp.clone().requires_grad_()
        outs = m(inp)
        weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
                   for i, o in enumerate(outs)]
        loss = sum((o * w.to(o.dtype)).sum() for o, w in zip(outs, weights))
        return outs, torch.autograd.grad(loss, [inp] + list(m.parameters()))

    def deviation(got, want):
        return max(((a.double() - b).abs().max() / b.abs().max()).item() for a, b in zip(got, want))

    eager_out, eager_grads = run(model, x)
    ref_out, ref_grads = run(model64, x.double())
    torch._dynamo.reset()
    compiled_out, compiled_grads = run(torch.compile(model, fullgraph=True), x)
    for got, eager, ref, what in ((compiled_out, eager_out, ref_out, 'outputs'),
                                  (compiled_grads, eager_grads, ref_grads, 'gradients')):
        assert deviation(eager, ref) < 1e-5, what  # float32 rounding through the layers
        assert deviation(got, ref) < 3 * deviation(eager, ref) + 1e-6, what


@pytest.mark.slow
def test_training_traces_in_one_graph_with_dynamic_shapes():
    """torch.compile(dynamic=True) makes a module's floats symbolic (attn_drop among them); the
    backend choice must still be a constant, or the graph breaks at every layer (and inductor then
    failed on the pieces). Dynamo only (backend='eager'): one graph per size class, fullgraph=True
    fails on any break, and the gradients match eager's."""
    torch.manual_seed(0)
    model = DiNAT(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], kernel_size=3,
                  dilations=[[4], [2], [1], [1]], mlp_ratio=2.0, drop_path_rate=0.0).train()
    compiled = torch.compile(copy.deepcopy(model), dynamic=True, fullgraph=True, backend='eager')
    torch._dynamo.reset()
    for shape in ((1, 3, 64, 96), (1, 3, 80, 112)):
        x = torch.randn(shape)
        grads = []
        for m in (compiled, model):
            m.zero_grad()
            sum(o.square().mean() for o in m(x)).backward()
            grads.append([p.grad for p in m.parameters()])
        for got, want in zip(*grads):
            torch.testing.assert_close(got, want)


# The detector (backbone and FPN neck) and the segmentor (UPerNet: a backbone and no neck); the
# detector also trains and tests compiled through the tools (tests/test_detection.py).
@pytest.mark.slow
@pytest.mark.parametrize('config, scope, parts', [('configs/toy/maskrcnn_dinat_mini_toy.py', 'mmdet', ('backbone', 'neck')),
                                                  ('configs/toy/upernet_dinat_mini_toy.py', 'mmseg', ('backbone',))])
def test_compile_hook_compiles_backbone_and_neck_in_place_with_the_configs_options(config, scope, parts):
    from types import SimpleNamespace

    from mmengine.config import Config

    from dinat_mm.cli.config import enable_compile
    from dinat_mm.registry import scope_models
    from dinat_mm.runner import CompileHook
    cfg = Config.fromfile(config)
    cfg.compile = dict(backend='eager')  # mmengine's compile entry: its options reach torch.compile
    enable_compile(cfg)
    assert cfg.compile is None and cfg.custom_hooks[-1] == dict(type='CompileHook', options=dict(backend='eager'))
    model = scope_models(scope).build(cfg.model)
    assert tuple(p for p in ('backbone', 'neck') if getattr(model, p, None) is not None) == parts
    keys = set(model.state_dict())
    logged = []
    runner = SimpleNamespace(model=model, logger=SimpleNamespace(info=logged.append))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    CompileHook(options=cfg.custom_hooks[-1].options).before_run(runner)
    assert all(getattr(model, p)._compiled_call_impl is not None for p in parts)
    assert f'torch.compile of the {" and ".join(parts)}' in logged[0]
    model.extract_feat(torch.randn(1, 3, 64, 64))
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] >= len(parts)  # each part went through dynamo
    assert set(model.state_dict()) == keys  # in place: checkpoints keep their keys
