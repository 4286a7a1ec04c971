"""The DiNAT backbone: shapes, the small-map padding, a functional float64 reference of the whole
network, frozen_stages, with_cp, the NAT alias, presets and argument validation."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from dinat_mm import NAT, DiNAT
from tests.helpers.reference import na2d_brute

SMALL = dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3, mlp_ratio=2.0,
             dilations=[[1], [2], [1, 3], [1]], drop_path_rate=0.0)


def small(**kwargs):
    cfg = dict(SMALL)
    cfg.update(kwargs)
    model = DiNAT(**cfg)
    model.init_weights()
    return model


def level_sizes(h, w, levels=4):
    """3x3 stride-2 pad-1 convolutions map n to ceil(n/2): two in the tokenizer, one per level."""
    sizes = [(math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))]
    for _ in range(levels - 1):
        sizes.append((math.ceil(sizes[-1][0] / 2), math.ceil(sizes[-1][1] / 2)))
    return sizes


@pytest.mark.parametrize('hw', [(1, 1), (7, 9), (33, 17), (64, 64), (50, 70)])
def test_output_shapes(hw):
    model = small().eval()
    outs = model(torch.randn(2, 3, *hw))
    assert isinstance(outs, tuple) and len(outs) == 4
    for i, (out, (h, w)) in enumerate(zip(outs, level_sizes(*hw))):
        assert out.shape == (2, 16 * 2**i, h, w)
        assert torch.isfinite(out).all()


def test_out_indices_select_levels_and_norms():
    model = small(out_indices=(1, 3)).eval()
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 128]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3') and not hasattr(model, 'norm0')


# ---- a functional float64 reference of the whole network, from the architecture description ----

def _ln(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + '.weight'], sd[prefix + '.bias'], eps=1e-5)


def _linear(x, sd, prefix):
    return F.linear(x, sd[prefix + '.weight'], sd.get(prefix + '.bias'))


def reference_layer(x, sd, p, heads, kernel, d, layer_scale=False):
    """Pre-norm: x + NA(LN(x)), maps smaller than the dilated window zero-padded right/bottom
    before qkv and cropped after; then x + MLP(LN(x)); gamma1/gamma2 with layer scale."""
    B, H, W, C = x.shape
    y = _ln(x, sd, p + 'norm1')
    y = F.pad(y, (0, 0, 0, max(0, kernel * d - W), 0, max(0, kernel * d - H)))
    Hp, Wp = y.shape[1:3]
    qkv = _linear(y, sd, p + 'attn.qkv').view(B, Hp, Wp, 3, heads, C // heads)
    q, k, v = (qkv[:, :, :, n].permute(0, 3, 1, 2, 4) for n in range(3))
    a = na2d_brute(q, k, v, kernel, d, rpb=sd[p + 'attn.rpb'])
    a = a.permute(0, 2, 3, 1, 4).reshape(B, Hp, Wp, C)[:, :H, :W]
    a = _linear(a, sd, p + 'attn.proj')
    x = x + (sd[p + 'gamma1'] * a if layer_scale else a)
    m = _linear(F.gelu(_linear(_ln(x, sd, p + 'norm2'), sd, p + 'mlp.fc1')), sd, p + 'mlp.fc2')
    return x + (sd[p + 'gamma2'] * m if layer_scale else m)


def reference_forward(sd, x, depths, heads, kernel, dilations, out_indices, layer_scale=False):
    x = F.conv2d(x, sd['patch_embed.proj.0.weight'], sd['patch_embed.proj.0.bias'], stride=2, padding=1)
    x = F.conv2d(x, sd['patch_embed.proj.1.weight'], sd['patch_embed.proj.1.bias'], stride=2, padding=1)
    x = _ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm')  # NHWC
    outs = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            x = reference_layer(x, sd, f'levels.{i}.blocks.{j}.', heads[i], kernel, dilations[i][j], layer_scale)
        if i in out_indices:
            outs.append(_ln(x, sd, f'norm{i}').permute(0, 3, 1, 2))
        if i < len(depths) - 1:
            x = F.conv2d(x.permute(0, 3, 1, 2), sd[f'levels.{i}.downsample.reduction.weight'], stride=2, padding=1)
            x = _ln(x.permute(0, 2, 3, 1), sd, f'levels.{i}.downsample.norm')
    return outs


def reference_forward_dinat_s(sd, x, depths, heads, kernel, dilations, out_indices):
    """DiNAT_s from its description: the image zero-padded right/bottom to a multiple of 4, a 4x4
    stride-4 convolution, LayerNorm; DiNAT's layers; patch merging: an odd map padded by one
    zero row/column, the 2x2 block's pixels (top-left, bottom-left, top-right, bottom-right) side
    by side, LayerNorm, linear without bias."""
    H, W = x.shape[-2:]
    x = F.pad(x, (0, (4 - W % 4) % 4, 0, (4 - H % 4) % 4))
    x = F.conv2d(x, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=4)
    x = _ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm')
    outs = []
    for i, depth in enumerate(depths):
        for j in range(depth):
            x = reference_layer(x, sd, f'layers.{i}.blocks.{j}.', heads[i], kernel, dilations[i][j])
        if i in out_indices:
            outs.append(_ln(x, sd, f'norm{i}').permute(0, 3, 1, 2))
        if i < len(depths) - 1:
            B, h, w, C = x.shape
            padded = x.new_zeros(B, h + h % 2, w + w % 2, C)
            padded[:, :h, :w] = x
            blocks = [padded[:, r::2, c::2] for c in (0, 1) for r in (0, 1)]
            x = F.linear(_ln(torch.cat(blocks, -1), sd, f'layers.{i}.downsample.norm'),
                         sd[f'layers.{i}.downsample.reduction.weight'])
    return outs


@pytest.mark.parametrize('backend', ['torch', 'cpu'])
@pytest.mark.parametrize('layer_scale', [None, 0.5])
def test_matches_functional_reference_in_float64(layer_scale, backend):
    torch.manual_seed(0)
    model = small(layer_scale=layer_scale, attn_backend=backend).double().eval()
    with torch.no_grad():  # random norms, biases and rpb, so that misplaced pieces show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 3, 45, 61, dtype=torch.float64)  # levels 12x16 .. 2x2: both padding paths
    sd = model.state_dict()
    ref = reference_forward(sd, x, SMALL['depths'], SMALL['num_heads'], 3, SMALL['dilations'],
                            (0, 1, 2, 3), layer_scale=layer_scale is not None)
    outs = model(x)
    for out, want in zip(outs, ref):
        torch.testing.assert_close(out, want, atol=1e-9, rtol=0)


@pytest.mark.parametrize('backend', ['torch', 'cpu'])
@pytest.mark.parametrize('hw', [(45, 61), (30, 23)])  # odd sizes at every level, maps below the window
def test_dinat_s_matches_functional_reference_in_float64(hw, backend):
    from dinat_mm import DiNAT_s
    torch.manual_seed(0)
    cfg = dict(embed_dim=16, depths=[2, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3,
               dilations=[[1, 3], [2], [1, 2], [1]], drop_path_rate=0.0, attn_backend=backend)
    model = DiNAT_s(**cfg).double().eval()
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    ref = reference_forward_dinat_s(model.state_dict(), x, cfg['depths'], cfg['num_heads'], 3, cfg['dilations'],
                                    (0, 1, 2, 3))
    outs = model(x)
    assert [o.shape for o in outs] == [r.shape for r in ref]
    for out, want in zip(outs, ref):
        torch.testing.assert_close(out, want, atol=1e-9, rtol=0)


def test_padding_path_against_padded_reference():
    """A 4x5 map with kernel 3 and dilation 2 (window 6): zero-pad the normalised input to 6x6
    before qkv, attend, crop."""
    torch.manual_seed(1)
    model = small(dilations=[[2], [1], [1, 1], [1]]).double().eval()
    attn = model.levels[0].blocks[0].attn
    x = torch.randn(2, 4, 5, 16, dtype=torch.float64)
    padded = F.pad(x, (0, 0, 0, 1, 0, 2))
    qkv = attn.qkv(padded).view(2, 6, 6, 3, 1, 16)
    q, k, v = (qkv[:, :, :, n].permute(0, 3, 1, 2, 4) for n in range(3))
    want = attn.proj(na2d_brute(q, k, v, 3, 2, rpb=attn.rpb).permute(0, 2, 3, 1, 4).reshape(2, 6, 6, 16)[:, :4, :5])
    torch.testing.assert_close(attn(x), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages(frozen_stages):
    model = small(frozen_stages=frozen_stages)
    assert model.train() is model and model.eval() is model
    model.train()
    frozen = [] if frozen_stages < 0 else ['patch_embed'] + [f'levels.{i}' for i in range(frozen_stages)] \
        + [f'norm{i}' for i in range(frozen_stages)]
    for name, param in model.named_parameters():
        is_frozen = any(name.startswith(f + '.') for f in frozen)
        assert param.requires_grad is not is_frozen, name
    for name, module in model.named_modules():
        if any(name == f or name.startswith(f + '.') for f in frozen):
            assert not module.training, name
        elif name:
            assert module.training, name  # train() must not leave the rest in eval mode
    out = model(torch.randn(1, 3, 32, 32))[-1]  # the original crashed for frozen_stages >= 2
    if frozen_stages < 4:
        out.sum().backward()
    else:
        assert not out.requires_grad  # every level and norm frozen


def test_with_cp_gives_identical_outputs_and_gradients():
    torch.manual_seed(0)
    plain = small().train()
    checkpointed = small(with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 40, 36)
    grads = []
    for model in (plain, checkpointed):
        outs = model(x)
        sum(o.square().mean() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for a, b in zip(plain(x), checkpointed(x)):
        torch.testing.assert_close(a, b)
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


def test_nat_is_dinat_with_every_dilation_one():
    nat = NAT(arch='mini')
    assert all(d == 1 for level in nat.dilations for d in level)
    assert [len(level) for level in nat.dilations] == [3, 4, 6, 5]
    with pytest.raises(ValueError, match='NAT has no dilations'):
        NAT(arch='mini', dilations=[[1, 8, 1], [1, 4, 1, 4], [1, 2] * 3, [1] * 5])
    cfg = dict(SMALL, dilations=None)
    nat, dinat = NAT(**cfg).eval(), DiNAT(**dict(cfg, dilations=[[1], [1], [1, 1], [1]])).eval()
    dinat.load_state_dict(nat.state_dict())
    x = torch.randn(1, 3, 40, 40)
    for a, b in zip(nat(x), dinat(x)):
        torch.testing.assert_close(a, b)


# Published sizes (classification, with the 1000-class head), in millions (arXiv 2209.15001).
PUBLISHED_PARAMS_M = dict(mini=20, tiny=28, small=51, base=90, large=200)


@pytest.mark.parametrize('arch', sorted(PUBLISHED_PARAMS_M))
def test_presets_match_published_sizes(arch):
    with torch.device('meta'):
        model = DiNAT(arch=arch, out_indices=(3,))
    last = model.num_features[-1]
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith('norm'))
    with_head = backbone + 2 * last + last * 1000 + 1000  # final LayerNorm and linear classifier
    assert abs(with_head / 1e6 - PUBLISHED_PARAMS_M[arch]) < 0.6 * (1 + (arch == 'large'))


def test_preset_facts():
    base = DiNAT(arch='base')
    assert base.levels[0].blocks[0].layer_scale and base.mlp_ratio == 2.0
    assert torch.equal(base.levels[0].blocks[0].gamma1, torch.full((128,), 1e-5))  # the release's DiNAT-B
    assert not DiNAT(arch='base', layer_scale=0).levels[0].blocks[0].layer_scale
    assert torch.equal(DiNAT(arch='tiny', layer_scale=0.5).levels[1].blocks[0].gamma2, torch.full((128,), 0.5))
    tiny = DiNAT(arch='tiny')
    assert not tiny.levels[0].blocks[0].layer_scale
    assert tiny.dilations[0] == [1, 8, 1] and tiny.dilations[2][:4] == [1, 2, 1, 2]
    assert tiny.dilations[3] == [1, 1, 1, 1, 1]
    assert DiNAT().depths == [3, 4, 18, 5]  # no arguments: tiny
    det = DiNAT(arch='tiny', dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]])
    assert det.dilations[0] == [1, 28, 1] and det.num_features == [64, 128, 256, 512]


def test_pretrained_alias():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = DiNAT(**SMALL, pretrained='some/path.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='some/path.pth')
    assert any('deprecated' in str(w.message) for w in caught)
    with pytest.raises(ValueError, match='pretrained and init_cfg'):
        DiNAT(**SMALL, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth'))


@pytest.mark.parametrize('kwargs,error,words', [
    (dict(num_heads=[1, 2, 2]), ValueError, 'num_heads must have 4 entries'),
    (dict(dilations=[[1], [2], [1, 3]]), ValueError, 'dilations must have 4 entries'),
    (dict(dilations=[[1], [2], [1], [1]]), ValueError, 'dilations[2] must have 2 entries'),
    (dict(dilations=[[1], [0], [1, 1], [1]]), ValueError, 'every dilation must be >= 1'),
    (dict(dilations=[[1], [1.5], [1, 1], [1]]), TypeError, 'dilations[1] must be a list of ints'),
    (dict(kernel_size=4), ValueError, 'kernel_size must be an odd int >= 3'),
    (dict(num_heads=[3, 2, 2, 4]), ValueError, 'num_heads[0]=3 must divide the level width 16'),
    (dict(out_indices=(0, 4)), ValueError, 'out_indices must be in [0, 3]'),
    (dict(in_patch_size=2), ValueError, 'in_patch_size must be 4'),
    (dict(frozen_stages=5), ValueError, 'frozen_stages must be an int in [-1, 4]'),
    (dict(attn_backend='cuda'), ValueError, 'attn_backend must be one of'),
    (dict(arch='huge'), ValueError, 'arch must be one of'),
    (dict(depths='1111'), TypeError, 'depths must be a list of ints'),
])
def test_validation_errors_name_the_argument(kwargs, error, words):
    with pytest.raises(error) as info:
        DiNAT(**dict(SMALL, **kwargs))
    assert words in str(info.value)


def test_missing_architecture_argument_is_named():
    with pytest.raises(TypeError, match='num_heads is required'):
        DiNAT(embed_dim=16, depths=[1, 1, 1, 1])


@pytest.mark.parametrize('x,error,words', [
    (torch.randn(3, 32, 32), ValueError, 'expects a 4-D tensor [N, 3, H, W], got shape (3, 32, 32)'),
    (torch.randn(1, 4, 32, 32), ValueError, '[N, 3, H, W]'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, 'floating-point'),
    ([[1.0]], TypeError, 'expects a torch.Tensor'),
])
def test_input_errors(x, error, words):
    with pytest.raises(error) as info:
        small()(x)
    assert words in str(info.value)


def test_attention_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = small(attn_drop_rate=0.5)
    plain = small(attn_drop_rate=0.0)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 48, 40)
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(x), plain.eval()(x)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)  # eval: no dropout at all
        model.train()
        assert not torch.allclose(model(x)[0], plain(x)[0])  # training: the same weights, dropped


def test_drop_path_rises_linearly_over_all_layers():
    model = DiNAT(arch='tiny', drop_path_rate=0.3)
    layers = [layer for level in model.levels for layer in level.blocks]
    assert len(layers) == 30  # DiNAT-T: depths 3, 4, 18, 5
    rates = [getattr(layer.drop_path, 'drop_prob', 0.0) for layer in layers]
    want = [0.3 * i / (len(layers) - 1) for i in range(len(layers))]
    assert rates == pytest.approx(want, abs=1e-7)
    assert isinstance(layers[0].drop_path, torch.nn.Identity)  # rate 0: no stochastic depth at all


def test_initialisation_is_the_releases():
    """timm's trunc_normal_(std=.02) for Linear weights and every rpb table, zero biases, unit
    LayerNorms (the release's _init_weights and its rpb initialisation)."""
    torch.manual_seed(0)
    model = DiNAT(arch='mini')
    model.init_weights()
    rpb = torch.cat([m.attn.rpb.detach().flatten() for level in model.levels for m in level.blocks])
    linear = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, torch.nn.Linear)])
    for values in (rpb, linear):
        assert values.numel() > 20000
        assert abs(values.std().item() - 0.02) < 0.0005 and abs(values.mean().item()) < 0.0005
        assert values.abs().max() < 0.02 * 6  # a normal's tail: trunc_normal_ clips at +-2, far out
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, torch.nn.LayerNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.count_nonzero(m.bias) == 0


# ---- DiNAT_s: the release's alternative layout, sharing DiNAT's layer and contract ----

DINAT_S_PUBLISHED_PARAMS_M = dict(tiny=28, small=50, base=88, large=197)  # classification/DiNAT.md


@pytest.mark.parametrize('arch', sorted(DINAT_S_PUBLISHED_PARAMS_M))
def test_dinat_s_presets_match_published_sizes(arch):
    from dinat_mm import DiNAT_s
    with torch.device('meta'):
        model = DiNAT_s(arch=arch, out_indices=(3,))
    last = model.num_features[-1]
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith('norm'))
    with_head = backbone + 2 * last + last * 1000 + 1000  # final LayerNorm and linear classifier
    assert abs(with_head / 1e6 - DINAT_S_PUBLISHED_PARAMS_M[arch]) < 0.6 * (1 + (arch == 'large'))
    assert model.mlp_ratio == 4.0 and not model.layers[0].blocks[0].layer_scale


def test_dinat_s_builds_from_the_releases_backbone_dict_with_its_parameter_names():
    from dinat_mm.registry import scope_models
    release = dict(type='DiNAT_s', embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], kernel_size=7,
                   dilations=[[1, 28], [1, 14], [1, 3, 1, 5, 1, 7], [1, 3]], mlp_ratio=4., qkv_bias=True,
                   qk_scale=None, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.2, patch_norm=True,
                   out_indices=(0, 1, 2, 3))
    model = scope_models('mmdet').build(release)
    keys = set(model.state_dict())
    # the names the release's DiNAT_s (Swin's PatchEmbed/PatchMerging, natten's attention) has
    assert {'patch_embed.proj.weight', 'patch_embed.norm.weight', 'layers.0.blocks.1.attn.rpb',
            'layers.0.blocks.1.attn.qkv.weight', 'layers.2.blocks.5.mlp.fc2.bias', 'layers.2.downsample.reduction.weight',
            'layers.2.downsample.norm.bias', 'norm3.weight'} <= keys
    assert 'layers.3.downsample.reduction.weight' not in keys and 'layers.0.downsample.reduction.bias' not in keys
    assert model.layers[0].downsample.reduction.weight.shape == (192, 384)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_dinat_s_frozen_stages_stay_frozen_through_train(frozen_stages):
    from dinat_mm import DiNAT_s
    model = DiNAT_s(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3,
                    frozen_stages=frozen_stages)
    model.init_weights()
    assert model.train() is model
    frozen = [] if frozen_stages < 0 else ['patch_embed'] + [f'layers.{i}' for i in range(frozen_stages)] \
        + [f'norm{i}' for i in range(frozen_stages)]
    for name, param in model.named_parameters():
        assert param.requires_grad is not any(name.startswith(f + '.') for f in frozen), name
    for name, module in model.named_modules():
        if name:
            assert module.training is not any(name == f or name.startswith(f + '.') for f in frozen), name


def test_dinat_s_with_cp_and_out_indices():
    from dinat_mm import DiNAT_s
    torch.manual_seed(0)
    cfg = dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3, out_indices=(1, 3),
               drop_path_rate=0.0)
    plain, checkpointed = DiNAT_s(**cfg).train(), DiNAT_s(with_cp=True, **cfg).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 37, 50)
    grads = []
    for model in (plain, checkpointed):
        outs = model(x)
        assert [o.shape[1] for o in outs] == [32, 128]
        sum(o.square().mean() for o in outs).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


@pytest.mark.parametrize('kwargs,error,words', [
    (dict(patch_size=0), ValueError, 'patch_size must be an int >= 1'),
    (dict(layer_scale=1e-5), ValueError, 'DiNAT_s has no layer scale'),
    (dict(in_patch_size=4), TypeError, 'DiNAT_s takes patch_size'),
    (dict(arch='mini'), ValueError, "arch must be one of ['base', 'large', 'small', 'tiny']"),
    (dict(arch='tiny', dilations=[[1, 2]] * 3), ValueError, 'dilations must have 4 entries'),
])
def test_dinat_s_validation_names_the_argument(kwargs, error, words):
    from dinat_mm import DiNAT_s
    with pytest.raises(error) as info:
        DiNAT_s(**kwargs)
    assert words in str(info.value)
