"""DiNAT through the OpenMMLab registries: custom_imports under mmdet's, mmseg's and mmpretrain's default scopes,
and Mask R-CNN / UPerNet models that train one step and predict on CPU."""
import textwrap
from pathlib import Path

import pytest
from mmengine.config import Config

from tests.helpers.models import build_model, seg_batch, train_step_and_predict
from tests.helpers.tools import run_python

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
SMALL_BACKBONE = dict(type='DiNAT', embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3,
                      mlp_ratio=2.0, dilations=[[1], [2], [1, 3], [1]], drop_path_rate=0.1)
WIDTHS = [16, 32, 64, 128]


@pytest.mark.slow
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_type_dinat_builds_under_default_scope_through_custom_imports(scope, tmp_path):
    """A fresh interpreter that has never imported dinat_mm: only the config's custom_imports does."""
    config = tmp_path / 'cfg.py'
    config.write_text(textwrap.dedent(f'''
        custom_imports = dict(imports=['dinat_mm'], allow_failed_imports=False)
        default_scope = '{scope}'
        backbone = {SMALL_BACKBONE!r}
        nat = dict(type='NAT', arch='mini')
        isotropic = dict(type='NATIsotropic', embed_dim=32, depth=2, num_heads=2)
    '''))
    script = textwrap.dedent(f'''
        import sys
        assert 'dinat_mm' not in sys.modules
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from {scope}.registry import MODELS
        cfg = Config.fromfile({str(config)!r})
        init_default_scope(cfg.default_scope)
        model = MODELS.build(cfg.backbone)
        nat = MODELS.build(cfg.nat)
        isotropic = MODELS.build(cfg.isotropic)
        print(type(model).__module__, type(model).__name__, type(nat).__name__, type(isotropic).__name__)
    ''')
    out = run_python('-c', script)
    assert out.stdout.split() == ['dinat_mm.models.dinat', 'DiNAT', 'NAT', 'NATIsotropic']


def test_import_dinat_mm_loads_the_runner_plugins_and_none_of_the_tools_side():
    """A config's custom_imports registers the backbones, hooks and optimizer wrapper, and loads
    neither the tools' config preparation and pre-run checks, nor the export code, nor the
    transformers patch."""
    script = textwrap.dedent('''
        import sys
        import dinat_mm
        from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPERS
        print(sorted(m for m in sys.modules if m.startswith(('dinat_mm.cli', 'dinat_mm.export', 'dinat_mm.hf'))))
        print(all(MODELS.get(n) for n in ('DiNAT', 'NAT', 'DiNAT_s', 'NATIsotropic')),
              all(HOOKS.get(n) for n in ('RNGStateHook', 'AtomicCheckpointHook', 'SyncNormStatsHook',
                                         'BF16FeaturesHook', 'CompileHook')),
              OPTIM_WRAPPERS.get('CPUBF16OptimWrapper') is not None)
    ''')
    out = run_python('-c', script)
    assert out.stdout.split('\n')[:2] == ['[]', 'True True True']


def _grads_reached_backbone(model):
    """Every backbone parameter got a gradient, and some are not zero."""
    grads = [p.grad for n, p in model.backbone.named_parameters() if p.requires_grad]
    return all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
def test_mask_rcnn_trains_a_step_and_predicts():
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(str(CONFIGS / '_base_/models/mask_rcnn_dinat_fpn.py'))
    cfg.model.backbone = SMALL_BACKBONE
    cfg.model.neck.in_channels = WIDTHS
    cfg.model.roi_head.bbox_head.num_classes = cfg.model.roi_head.mask_head.num_classes = 3
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 80, 112)], num_items=[2, 3],
                          num_classes=3, with_mask=True)
    losses, preds = train_step_and_predict(build_model(cfg.model, 'mmdet'), data, _grads_reached_backbone)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    assert len(preds) == 2
    for pred, (h, w) in zip(preds, [(96, 128), (80, 112)]):
        inst = pred.pred_instances
        assert inst.bboxes.shape[1] == 4 and len(inst.scores) == len(inst.labels) == len(inst.masks)
        assert tuple(inst.masks.shape[1:]) == (h, w)


def test_upernet_trains_a_step_and_predicts_full_resolution():
    cfg = Config.fromfile(str(CONFIGS / '_base_/models/upernet_dinat.py'))
    cfg.model.backbone = SMALL_BACKBONE
    cfg.model.data_preprocessor.size = (72, 88)  # the dataset configs set the crop size here
    cfg.model.decode_head.update(in_channels=WIDTHS, channels=32, num_classes=5)
    cfg.model.auxiliary_head.update(in_channels=WIDTHS[2], channels=16, num_classes=5)
    losses, preds = train_step_and_predict(build_model(cfg.model, 'mmseg'), seg_batch((72, 88), classes=5),
                                           _grads_reached_backbone)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    assert len(preds) == 2 and preds[0].pred_sem_seg.data.shape == (1, 72, 88)
    assert int(preds[0].pred_sem_seg.data.max()) < 5
