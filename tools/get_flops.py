"""Parameters and FLOPs (multiply-adds, mmengine's complexity analysis with neighborhood attention
counted exactly) of the model in a config.

    python tools/get_flops.py CONFIG [--shape H W]

Default shapes are the release's: 1280x800 for detection, 2048x512 for segmentation, the config's
test crop (224 or 384) for classification. The count is also split into backbone, neck and head(s).
"""
import argparse
import inspect
from functools import partial

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    args = parser.parse_args()
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from dinat_mm.analysis import count
    from dinat_mm.cli.config import load_config
    from dinat_mm.errors import UserError
    from dinat_mm.registry import scope_models
    try:
        cfg = load_config(args.config)
    except UserError as err:
        raise SystemExit(f'error: {err}')
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None
    MODELS = scope_models(cfg.default_scope)
    if cfg.default_scope == 'mmpretrain':
        from mmpretrain.structures import DataSample
        crop = cfg.test_pipeline[-2].crop_size
        height, width = args.shape or (crop, crop)
        data = dict(inputs=[torch.zeros(3, height, width, dtype=torch.uint8)], data_samples=[DataSample()])
    elif cfg.default_scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        height, width = args.shape or (800, 1280)
        data = demo_mm_inputs(batch_size=1, image_shapes=[(3, height, width)], num_items=[1])
    else:
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        height, width = args.shape or (512, 2048)
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.zeros(1, height, width, dtype=torch.long)))
        sample.set_metainfo(dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width)))
        data = dict(inputs=[torch.zeros(3, height, width, dtype=torch.uint8)], data_samples=[sample])
        cfg.model.data_preprocessor.size = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    batch = model.data_preprocessor(data, False)
    head = getattr(model, 'decode_head', None)
    if head is not None and 'batch_data_samples' in inspect.signature(type(head).forward).parameters:
        # mmseg's Mask2Former head needs the samples (image sizes) even in tensor mode, which
        # EncoderDecoder does not pass on: the same forward, with them.
        model.forward = lambda inputs: model.decode_head(model.extract_feat(inputs), batch['data_samples'])
    else:
        model.forward = partial(model.forward, data_samples=batch['data_samples'], mode='tensor')
    result = count(model, (batch['inputs'],))
    digits = 1 if cfg.default_scope == 'mmpretrain' else 0  # classifiers: a few GFLOPs each
    parts = ', '.join(f'{name} {flops / 1e9:.{digits}f} G' for name, flops in result['by_part'].items())
    print(f'{args.config}: input {height}x{width}, params {result["params"] / 1e6:.1f} M, '
          f'FLOPs {result["flops"] / 1e9:.{digits}f} G ({parts})')


if __name__ == '__main__':
    main()
