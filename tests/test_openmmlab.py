"""DiNAT through the OpenMMLab registries: custom_imports under mmdet's and mmseg's default scopes,
and Mask R-CNN / UPerNet models that train one step and predict on CPU."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
SMALL_BACKBONE = dict(type='DiNAT', embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=3,
                      mlp_ratio=2.0, dilations=[[1], [2], [1, 3], [1]], drop_path_rate=0.1)
WIDTHS = [16, 32, 64, 128]


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_type_dinat_builds_under_default_scope_through_custom_imports(scope, tmp_path):
    """A fresh interpreter that has never imported dinat_mm: only the config's custom_imports does."""
    config = tmp_path / 'cfg.py'
    config.write_text(textwrap.dedent(f'''
        custom_imports = dict(imports=['dinat_mm'], allow_failed_imports=False)
        default_scope = '{scope}'
        backbone = {SMALL_BACKBONE!r}
        nat = dict(type='NAT', arch='mini')
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
        print(type(model).__module__, type(model).__name__, type(nat).__name__)
    ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['dinat_mm.models.dinat', 'DiNAT', 'NAT']


def _grads_reached_backbone(model):
    grads = [p.grad for n, p in model.backbone.named_parameters() if p.requires_grad]
    return all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_mask_rcnn_trains_a_step_and_predicts():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(CONFIGS / '_base_/models/mask_rcnn_dinat_fpn.py'))
    cfg.model.backbone = SMALL_BACKBONE
    cfg.model.neck.in_channels = WIDTHS
    cfg.model.roi_head.bbox_head.num_classes = cfg.model.roi_head.mask_head.num_classes = 3
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 80, 112)], num_items=[2, 3],
                          num_classes=3, with_mask=True)
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(losses)
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    assert _grads_reached_backbone(model)
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(preds) == 2
    for pred, (h, w) in zip(preds, [(96, 128), (80, 112)]):
        inst = pred.pred_instances
        assert inst.bboxes.shape[1] == 4 and len(inst.scores) == len(inst.labels) == len(inst.masks)
        assert tuple(inst.masks.shape[1:]) == (h, w)


def test_upernet_trains_a_step_and_predicts_full_resolution():
    from mmengine.model import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(CONFIGS / '_base_/models/upernet_dinat.py'))
    cfg.model.backbone = SMALL_BACKBONE
    cfg.model.data_preprocessor.size = (72, 88)  # the dataset configs set the crop size here
    cfg.model.decode_head.update(in_channels=WIDTHS, channels=32, num_classes=5)
    cfg.model.auxiliary_head.update(in_channels=WIDTHS[2], channels=16, num_classes=5)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN needs a process group
    model.init_weights()
    g = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, 72, 88), generator=g, dtype=torch.uint8))
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 5, (1, 72, 88), generator=g)))
        sample.set_metainfo(dict(img_shape=(72, 88), ori_shape=(72, 88), pad_shape=(72, 88),
                                 padding_size=[0, 0, 0, 0]))
        samples.append(sample)
    data = dict(inputs=inputs, data_samples=samples)
    model.train()
    losses = model(**model.data_preprocessor(data, True), mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    assert _grads_reached_backbone(model)
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(data, False), mode='predict')
    assert len(preds) == 2 and preds[0].pred_sem_seg.data.shape == (1, 72, 88)
    assert int(preds[0].pred_sem_seg.data.max()) < 5
