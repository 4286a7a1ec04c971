"""The DiNAT release's ImageNet classifiers written from the papers' description, in float64, as
functions of a state dict in the release's parameter names; and Hugging Face's names for the same
tensors (DinatForImageClassification, NatForImageClassification, DinatModel), from its modelling
code's module names. Nothing here imports dinat_mm's models or checkpoint code.

Families (``spec['family']``):
- ``hierarchical`` (DiNAT, NAT): two 3x3 stride-2 convolutions and a LayerNorm; levels
  ``levels.{i}.blocks.{j}``, each but the last followed by a 3x3 stride-2 convolution without bias
  and a LayerNorm (``levels.{i}.downsample``);
- ``swin`` (DiNAT_s): a 4x4 patch convolution and a LayerNorm; levels ``layers.{i}.blocks.{j}``,
  each but the last followed by Swin's patch merging (``layers.{i}.downsample``);
- ``isotropic``: a 16x16 patch convolution and a LayerNorm; layers ``layers.{i}``.
Then the final LayerNorm ``norm``, the mean over positions and the linear ``head``.

A layer: x + g1 * proj(NA(LN1(x))), then + g2 * fc2(GELU(fc1(LN2(x)))). NA pads maps smaller than
its dilated window with zeros on the right/bottom (after LN1) and crops after the projection.
"""
import torch
import torch.nn.functional as F

from .reference import window_sum, window_weights


def _ln(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + 'weight'], sd[prefix + 'bias'], eps=1e-5)


def _linear(sd, prefix, x):
    return F.linear(x, sd[prefix + 'weight'], sd.get(prefix + 'bias'))


def layer(sd, p, x, heads, kernel, dilation, weights=None):
    """One layer; its attention weights over the padded map are appended to ``weights`` if given."""
    batch, height, width, channels = x.shape
    h = _ln(sd, p + 'norm1.', x)
    window = kernel * dilation
    pad_h, pad_w = max(0, window - height), max(0, window - width)
    h = F.pad(h, (0, 0, 0, pad_w, 0, pad_h))
    qkv = _linear(sd, p + 'attn.qkv.', h).reshape(batch, height + pad_h, width + pad_w, 3, heads, channels // heads)
    q, k, v = qkv.permute(3, 0, 4, 1, 2, 5)
    attn = window_weights(q, k, kernel, dilation, rpb=sd[p + 'attn.rpb'])
    if weights is not None:
        weights.append(attn)
    a = window_sum(attn, v, kernel, dilation)
    a = a.permute(0, 2, 3, 1, 4).reshape(batch, height + pad_h, width + pad_w, channels)[:, :height, :width]
    a = _linear(sd, p + 'attn.proj.', a)
    x = x + (sd[p + 'gamma1'] * a if p + 'gamma1' in sd else a)
    m = _linear(sd, p + 'mlp.fc2.', F.gelu(_linear(sd, p + 'mlp.fc1.', _ln(sd, p + 'norm2.', x))))
    return x + (sd[p + 'gamma2'] * m if p + 'gamma2' in sd else m)


def logits(sd, spec, image):
    """The classifier's logits for ``image`` [N, 3, H, W]."""
    return forward(sd, spec, image)['logits']


def forward(sd, spec, image):
    """What the classifier computes for ``image`` [N, 3, H, W], as a dict: ``embedding`` (after the
    stem's norm), per level its output ``before`` and ``after`` its downsampling (the last level has
    none; [N, H, W, C] each), ``weights`` (per level, its layers' attention weights) and ``logits``."""
    family = spec['family']
    if family == 'hierarchical':
        x = F.conv2d(image, sd['patch_embed.proj.0.weight'], sd['patch_embed.proj.0.bias'], stride=2, padding=1)
        x = F.conv2d(x, sd['patch_embed.proj.1.weight'], sd['patch_embed.proj.1.bias'], stride=2, padding=1)
    else:
        patch = 16 if family == 'isotropic' else 4
        x = F.pad(image, (0, -image.shape[-1] % patch, 0, -image.shape[-2] % patch))
        x = F.conv2d(x, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=patch)
    x = _ln(sd, 'patch_embed.norm.', x.permute(0, 2, 3, 1))
    out = dict(embedding=x, before=[], after=[], weights=[])
    if family == 'isotropic':
        for i, dilation in enumerate(spec['dilations']):
            x = layer(sd, f'layers.{i}.', x, spec['heads'], spec['kernel'], dilation)
    else:
        levels = 'levels' if family == 'hierarchical' else 'layers'
        for i, dilations in enumerate(spec['dilations']):
            out['weights'].append([])
            for j, dilation in enumerate(dilations):
                x = layer(sd, f'{levels}.{i}.blocks.{j}.', x, spec['heads'][i], spec['kernel'], dilation,
                          out['weights'][-1])
            out['before'].append(x)
            down = f'{levels}.{i}.downsample.'
            if i < len(spec['dilations']) - 1:
                if family == 'hierarchical':
                    x = F.conv2d(x.permute(0, 3, 1, 2), sd[down + 'reduction.weight'], stride=2, padding=1)
                    x = _ln(sd, down + 'norm.', x.permute(0, 2, 3, 1))
                else:
                    x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
                    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
                    x = _linear(sd, down + 'reduction.', _ln(sd, down + 'norm.', x))
            out['after'].append(x)
    out['logits'] = _linear(sd, 'head.', _ln(sd, 'norm.', x).mean(dim=(1, 2)))
    return out


def random_release_state(spec, num_classes, seed=0):
    """Random float64 weights (every norm, bias, rpb and layer scale too) under the release's names."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    def norm(prefix, dim):
        sd[prefix + 'weight'], sd[prefix + 'bias'] = 1 + rand(dim, scale=0.1), rand(dim, scale=0.1)

    def linear(prefix, out_dim, in_dim, bias=True):
        sd[prefix + 'weight'] = rand(out_dim, in_dim, scale=in_dim ** -0.5)
        if bias:
            sd[prefix + 'bias'] = rand(out_dim, scale=0.1)

    def block(p, dim, heads):
        norm(p + 'norm1.', dim)
        linear(p + 'attn.qkv.', 3 * dim, dim)
        sd[p + 'attn.rpb'] = rand(heads, 2 * spec['kernel'] - 1, 2 * spec['kernel'] - 1, scale=0.5)
        linear(p + 'attn.proj.', dim, dim)
        norm(p + 'norm2.', dim)
        hidden = int(dim * spec['mlp_ratio'])
        linear(p + 'mlp.fc1.', hidden, dim)
        linear(p + 'mlp.fc2.', dim, hidden)
        if spec.get('layer_scale'):
            sd[p + 'gamma1'], sd[p + 'gamma2'] = 1 + rand(dim, scale=0.3), 1 + rand(dim, scale=0.3)

    sd, family, dim = {}, spec['family'], spec['embed_dim']
    if family == 'hierarchical':
        sd['patch_embed.proj.0.weight'], sd['patch_embed.proj.0.bias'] = rand(dim // 2, 3, 3, 3), rand(dim // 2)
        sd['patch_embed.proj.1.weight'] = rand(dim, dim // 2, 3, 3, scale=(dim // 2 * 9) ** -0.5)
        sd['patch_embed.proj.1.bias'] = rand(dim)
    else:
        patch = 16 if family == 'isotropic' else 4
        sd['patch_embed.proj.weight'] = rand(dim, 3, patch, patch, scale=(3 * patch * patch) ** -0.5)
        sd['patch_embed.proj.bias'] = rand(dim)
    norm('patch_embed.norm.', dim)
    if family == 'isotropic':
        for i in range(len(spec['dilations'])):
            block(f'layers.{i}.', dim, spec['heads'])
        final = dim
    else:
        levels = 'levels' if family == 'hierarchical' else 'layers'
        for i, dilations in enumerate(spec['dilations']):
            width = dim * 2 ** i
            for j in range(len(dilations)):
                block(f'{levels}.{i}.blocks.{j}.', width, spec['heads'][i])
            if i < len(spec['dilations']) - 1:
                down = f'{levels}.{i}.downsample.'
                if family == 'hierarchical':
                    sd[down + 'reduction.weight'] = rand(2 * width, width, 3, 3, scale=(width * 9) ** -0.5)
                    norm(down + 'norm.', 2 * width)
                else:
                    norm(down + 'norm.', 4 * width)
                    linear(down + 'reduction.', 2 * width, 4 * width, bias=False)
        final = dim * 2 ** (len(spec['dilations']) - 1)
    norm('norm.', final)
    linear('head.', num_classes, final)
    return sd


def huggingface_names(release, prefix='dinat.', head=True):
    """A hierarchical release state dict under Hugging Face's names: ``prefix`` 'dinat.' or 'nat.'
    for the image classifiers (with ``classifier``), '' and ``head=False`` for DinatModel."""
    hf = {}
    for key, value in release.items():
        parts = key.split('.')
        if key.startswith('patch_embed.proj.'):
            hf[f'{prefix}embeddings.patch_embeddings.projection.{parts[2]}.{parts[3]}'] = value
        elif key.startswith('patch_embed.norm.'):
            hf[f'{prefix}embeddings.norm.{parts[2]}'] = value
        elif key.startswith('norm.'):
            hf[f'{prefix}layernorm.{parts[1]}'] = value
        elif key.startswith('head.'):
            if head:
                hf[f'classifier.{parts[1]}'] = value
        elif '.downsample.' in key:
            hf[f'{prefix}encoder.levels.{parts[1]}.downsample.{".".join(parts[3:])}'] = value
        else:
            level, block, rest = parts[1], parts[3], '.'.join(parts[4:])
            theirs = f'{prefix}encoder.levels.{level}.layers.{block}.'
            if rest.startswith('attn.qkv.'):
                q, k, v = value.chunk(3, dim=0)
                kind = rest.rsplit('.', 1)[1]
                hf[theirs + f'attention.self.query.{kind}'] = q
                hf[theirs + f'attention.self.key.{kind}'] = k
                hf[theirs + f'attention.self.value.{kind}'] = v
            elif rest == 'gamma1':
                hf[theirs + 'layer_scale_parameters'] = torch.stack(
                    [value, release[key[:-len('gamma1')] + 'gamma2']])
            elif rest != 'gamma2':
                names = {'attn.rpb': 'attention.self.rpb', 'attn.proj.weight': 'attention.output.dense.weight',
                         'attn.proj.bias': 'attention.output.dense.bias'}
                for ours, hf_name in (('norm1.', 'layernorm_before.'), ('norm2.', 'layernorm_after.'),
                                      ('mlp.fc1.', 'intermediate.dense.'), ('mlp.fc2.', 'output.dense.')):
                    if rest.startswith(ours):
                        names[rest] = hf_name + rest[len(ours):]
                hf[theirs + names[rest]] = value
    return hf
