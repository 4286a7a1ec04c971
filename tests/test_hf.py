"""Hugging Face transformers' DiNAT after ``dinat_mm.hf.enable()``: DinatModel,
DinatForImageClassification and DinatBackbone give what HF's DiNAT computes on natten's kernels
(natten2dqkrpb, softmax, natten2dav), written from that definition in float64 in
tests.helpers.classifier_reference, with the weights under HF's names (huggingface_names)."""
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import dinat_mm.hf
from dinat_mm.errors import UserError
from tests.helpers import classifier_reference as ref
from tests.helpers.reference import window_sum, window_weights
from tests.helpers.tools import run_python, run_tool_here

modeling = dinat_mm.hf.enable()
from transformers import (AutoModelForImageClassification, DinatBackbone, DinatConfig,  # noqa: E402
                          DinatForImageClassification, DinatModel)

NUM_CLASSES = 7
# Each has dilated and non-dilated levels and a map smaller than some layer's window (HF pads it).
SPECS = {
    'k3': dict(kernel=3, dilations=[[1, 4], [2, 1], [1]], heads=[1, 2, 4], layer_scale=0.0, size=(48, 40)),
    'k5': dict(kernel=5, dilations=[[1, 2], [2, 1], [1]], heads=[2, 2, 4], layer_scale=0.7, size=(64, 64)),
    'k7': dict(kernel=7, dilations=[[2, 1], [1]], heads=[2, 4], layer_scale=0.0, size=(48, 56)),
}


def spec_of(name):
    return dict(SPECS[name], family='hierarchical', embed_dim=16, mlp_ratio=2.0)


def config_of(name, **overrides):
    spec = spec_of(name)
    stages = [f'stage{i + 1}' for i in range(len(spec['dilations']))]
    return DinatConfig(embed_dim=spec['embed_dim'], depths=[len(d) for d in spec['dilations']],
                       num_heads=spec['heads'], kernel_size=spec['kernel'], dilations=spec['dilations'],
                       mlp_ratio=spec['mlp_ratio'], layer_scale_init_value=spec['layer_scale'], drop_path_rate=0.0,
                       num_labels=NUM_CLASSES, out_features=['stem'] + stages, **overrides)


def image_of(name, seed=3):
    return torch.randn(2, 3, *SPECS[name]['size'], generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def classifier(name, release, **overrides):
    model = DinatForImageClassification(config_of(name, **overrides)).double()
    model.load_state_dict(ref.huggingface_names(release))
    return model.eval()


def nchw(x):
    return x.permute(0, 3, 1, 2)


@pytest.mark.parametrize('name', SPECS)
def test_classifier_model_and_backbone_outputs_equal_the_float64_reference(name):
    spec, image = spec_of(name), image_of(name)
    release = ref.random_release_state(spec, NUM_CLASSES, seed=1)
    want = ref.forward(release, spec, image)
    out = classifier(name, release)(image, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(out.logits, want['logits'], rtol=0, atol=1e-9)
    # the stem's output, then each level's after its downsampling: [N, H, W, C] and reshaped NCHW
    hidden = [want['embedding']] + want['after']
    assert len(out.hidden_states) == len(out.reshaped_hidden_states) == len(hidden)
    for got, got_nchw, expected in zip(out.hidden_states, out.reshaped_hidden_states, hidden):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
        torch.testing.assert_close(got_nchw, nchw(expected), rtol=0, atol=1e-9)
    # HF returns each level's last layer's attention probabilities, [N, heads, H, W, k*k] of the padded map
    assert len(out.attentions) == len(want['weights'])
    for got, level in zip(out.attentions, want['weights']):
        torch.testing.assert_close(got, level[-1], rtol=0, atol=1e-12)

    model = DinatModel(config_of(name)).double().eval()
    model.load_state_dict(ref.huggingface_names(release, prefix='', head=False))
    base = model(image)
    torch.testing.assert_close(base.last_hidden_state, ref._ln(release, 'norm.', want['after'][-1]), rtol=0, atol=1e-9)

    backbone = DinatBackbone(config_of(name)).double().eval()
    weights = {k: v for k, v in ref.huggingface_names(release, prefix='', head=False).items()
               if not k.startswith('layernorm.')}
    g = torch.Generator().manual_seed(2)
    for stage in backbone.out_features:
        width = backbone.hidden_states_norms[stage].normalized_shape[0]
        for part, centre in (('weight', 1.0), ('bias', 0.0)):
            weights[f'hidden_states_norms.{stage}.{part}'] = centre + 0.1 * torch.randn(width, generator=g,
                                                                                        dtype=torch.float64)
    backbone.load_state_dict(weights)
    maps = backbone(image).feature_maps
    levels = [want['embedding']] + want['before']  # the stem, then each level before its downsampling
    assert len(maps) == len(levels)
    for stage, got, level in zip(backbone.out_features, maps, levels):
        expected = F.layer_norm(level, level.shape[-1:], weights[f'hidden_states_norms.{stage}.weight'],
                                weights[f'hidden_states_norms.{stage}.bias'])
        torch.testing.assert_close(got, nchw(expected), rtol=0, atol=1e-9)


def test_a_training_step_gives_the_float64_references_gradients_rpb_included():
    name = 'k5'
    spec, image, labels = spec_of(name), image_of(name), torch.tensor([1, 5])
    release = ref.random_release_state(spec, NUM_CLASSES, seed=4)
    model = classifier(name, release).train()
    model(image, labels=labels).loss.backward()

    leaves = {k: v.clone().requires_grad_() for k, v in release.items()}
    F.cross_entropy(ref.logits(leaves, spec, image), labels).backward()
    want = ref.huggingface_names({k: v.grad for k, v in leaves.items()})
    got = {k: p.grad for k, p in model.named_parameters()}
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-9, msg=key)
    rpb = got['dinat.encoder.levels.0.layers.1.attention.self.rpb']
    assert rpb.abs().sum() > 0


def test_attention_dropout_acts_in_training_only():
    config = config_of('k3', attention_probs_dropout_prob=0.5)
    attention = modeling.NeighborhoodAttention(config, dim=16, num_heads=2, kernel_size=3, dilation=2).double()
    x = torch.randn(2, 8, 7, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def split(linear):
        return linear(x).view(2, 8, 7, 2, 8).permute(0, 3, 1, 2, 4)

    q, k, v = split(attention.query), split(attention.key), split(attention.value)
    weights = window_weights(q, k, 3, 2, rpb=attention.rpb)

    def merge(y):
        return y.permute(0, 2, 3, 1, 4).reshape(2, 8, 7, 16)

    attention.eval()
    torch.testing.assert_close(attention(x)[0], merge(window_sum(weights, v, 3, 2)), rtol=0, atol=1e-12)
    out, probs = attention(x, output_attentions=True)
    torch.testing.assert_close(probs, weights, rtol=0, atol=1e-12)

    attention.train()
    out, probs = attention(x, output_attentions=True)
    kept = probs != 0
    assert 0.3 < kept.double().mean() < 0.7  # about half the weights dropped, the rest scaled by 1/(1-p)
    torch.testing.assert_close(probs[kept], 2 * weights[kept], rtol=0, atol=1e-12)
    torch.testing.assert_close(out, merge(window_sum(probs, v, 3, 2)), rtol=0, atol=1e-12)
    fused = attention(x)[0]  # the fused operator's dropout: neither the eval output nor deterministic
    assert not torch.allclose(fused, merge(window_sum(weights, v, 3, 2)))
    assert not torch.allclose(fused, attention(x)[0])


def write_hub_folder(folder, name, release):
    """A hub model folder as Hugging Face publishes one: config.json and model.safetensors."""
    config_of(name).save_pretrained(folder)
    save_file({k: v.float().contiguous() for k, v in ref.huggingface_names(release).items()},
              str(folder / 'model.safetensors'))


def test_from_pretrained_reads_a_hub_folder_and_round_trips(tmp_path):
    name = 'k7'
    spec, image = spec_of(name), image_of(name)
    release = ref.random_release_state(spec, NUM_CLASSES, seed=6)
    write_hub_folder(tmp_path / 'hub', name, release)
    want = ref.logits(release, spec, image)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / 'hub').eval()
    assert type(model) is DinatForImageClassification
    torch.testing.assert_close(model(image.float()).logits.double(), want, rtol=0, atol=2e-4)
    model.save_pretrained(tmp_path / 'saved')
    again = DinatForImageClassification.from_pretrained(tmp_path / 'saved').double().eval()
    torch.testing.assert_close(again(image).logits, want, rtol=0, atol=2e-5)  # float32 weights


# natten unimportable, as if it were not installed: import machinery and find_spec see None
HIDE_NATTEN = "import sys\nsys.modules['natten'] = None\n"


@pytest.mark.slow
@pytest.mark.parametrize('natten', ['installed', 'hidden'])
def test_enable_works_with_natten_installed_and_hidden(tmp_path, natten):
    name = 'k5'
    spec, image = spec_of(name), image_of(name)
    release = ref.random_release_state(spec, NUM_CLASSES, seed=7)
    write_hub_folder(tmp_path, name, release)
    torch.save(image, tmp_path / 'image.pt')
    code = (HIDE_NATTEN if natten == 'hidden' else '') + f'''
import sys, torch
import dinat_mm.hf
dinat_mm.hf.enable()
from transformers import DinatForImageClassification
model = DinatForImageClassification.from_pretrained({str(tmp_path)!r}).double().eval()
torch.save(model(torch.load({str(tmp_path / 'image.pt')!r})).logits, {str(tmp_path / 'logits.pt')!r})
try:
    import natten
    print('natten', natten.__version__)
except ImportError:
    print('natten unimportable')
'''
    run = run_python('-c', code)
    assert ('natten unimportable' if natten == 'hidden' else 'natten 0.') in run.stdout, run.log
    torch.testing.assert_close(torch.load(tmp_path / 'logits.pt'), ref.logits(release, spec, image),
                               rtol=0, atol=2e-5)


@pytest.mark.parametrize('version', ['4.56.2', '5.25.0', '4.57.6.dev0+x', 'main'])
def test_an_unsupported_transformers_is_refused_by_its_version(monkeypatch, version):
    import transformers
    supported = version.startswith('4.57.')
    monkeypatch.setattr(transformers, '__version__', version)
    if supported:
        assert dinat_mm.hf.enable() is modeling
        return
    with pytest.raises(UserError, match=f'transformers {version} is not supported'):
        dinat_mm.hf.enable()


def test_enable_is_idempotent():
    forward = modeling.NeighborhoodAttention.forward
    requires = modeling.requires_backends
    assert dinat_mm.hf.enable() is modeling
    assert modeling.NeighborhoodAttention.forward is forward and modeling.requires_backends is requires
    with pytest.raises(ImportError):  # the other backends are still asked for
        modeling.requires_backends(object(), ['natten', 'faiss'])


@pytest.mark.slow
def test_a_hub_folder_runs_both_ways_with_the_same_top_classes(tmp_path):
    run_python('tools/make_toy_data.py', 'hub', tmp_path / 'hub')
    config = 'configs/imagenet/dinat_mini_in1k_224.py'
    run = run_python('tools/hf_compare.py', tmp_path / 'hub' / 'model', config, tmp_path / 'hub' / 'image.jpg')
    assert 'same top classes: yes' in run.stdout, run.log
    difference = float(run.stdout.rsplit('largest logit difference: ', 1)[1].split()[0])
    assert difference < 1e-4, run.log
    missing = run_tool_here('tools/hf_compare.py', tmp_path / 'nowhere', config, tmp_path / 'hub' / 'image.jpg')
    assert missing.code != 0 and f'hub folder: {tmp_path / "nowhere" / "config.json"} not found' in missing.stderr
