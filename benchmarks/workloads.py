"""What the benchmarks run, derived from the shipped configs and presets: DiNAT-T as its Mask R-CNN
config builds it, mmdet's own Swin-T, their Mask R-CNNs, the DiNAT-T ImageNet classifier beside
mmpretrain's own Swin-T classifier, and na2d at DiNAT-T's level shapes."""
from __future__ import annotations

import logging
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
DETECTORS = dict(dinat_t=str(REPO / 'configs/maskrcnn_dinat_tiny_coco.py'),
                 swin_t='swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')  # in mmdet's installed configs
LABELS = dict(dinat_t='DiNAT-T', swin_t='Swin-T')
CLASSIFIERS = dict(dinat_t=str(REPO / 'configs/imagenet/dinat_tiny_in1k_224.py'),
                   swin_t='swin_transformer/swin-tiny_16xb64_in1k.py')  # in mmpretrain's installed configs


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternating(fns: Dict[str, Callable], repeats: int) -> Dict[str, float]:
    """Median seconds of each callable, run in turn after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def peer_config(configs: Dict[str, str], name: str, library: str):
    """The config of ``name``: this repository's (dinat_t) or the one ``library`` installs."""
    import importlib

    from mmengine.config import Config
    if name == 'dinat_t':
        return Config.fromfile(configs[name])
    package = Path(importlib.import_module(library).__file__).parent
    return Config.fromfile(str(package / '.mim/configs' / configs[name]))


def detector_config(name: str):
    return peer_config(DETECTORS, name, 'mmdet')


@lru_cache(maxsize=None)
def dinat_t_levels() -> Tuple[Tuple[int, int, int], ...]:
    """(heads, head_dim, largest dilation) of each level of DiNAT-T as its Mask R-CNN config builds it."""
    from dinat_mm.models import ARCH_SETTINGS
    backbone = detector_config('dinat_t').model.backbone
    preset = ARCH_SETTINGS[backbone.arch]
    return tuple((heads, preset['embed_dim'] * 2**i // heads, max(dilations))
                 for i, (heads, dilations) in enumerate(zip(preset['num_heads'], backbone.dilations)))


def kernel_size() -> int:
    backbone = detector_config('dinat_t').model.backbone
    return backbone.get('kernel_size') or 7


def level_shapes(height: int, width: int) -> List[Tuple[int, int, int, int, int]]:
    """(height, width, heads, head_dim, dilation) of DiNAT-T's levels for an image: the tokenizer's
    two stride-2 convolutions, then one per level; the config's largest dilation, clipped to what
    the map fits at the config's kernel size."""
    k = kernel_size()
    h, w = -(-(-(-height // 2)) // 2), -(-(-(-width // 2)) // 2)
    shapes = []
    for heads, head_dim, dilation in dinat_t_levels():
        shapes.append((h, w, heads, head_dim, max(1, min(dilation, h // k, w // k))))
        h, w = -(-h // 2), -(-w // 2)
    return shapes


def build_backbone(name: str, device: str = 'cpu', **overrides) -> torch.nn.Module:
    """The backbone of the detector config, random weights."""
    import dinat_mm  # noqa: F401  (registers DiNAT)
    from dinat_mm.registry import scope_models
    cfg = detector_config(name).model.backbone
    cfg.pop('init_cfg', None)
    cfg.update(drop_path_rate=0.0, **overrides)
    return scope_models('mmdet').build(cfg).to(device)


def build_classifier(name: str) -> Tuple[torch.nn.Module, int]:
    """The ImageNet classifier of the config (random weights, eval mode) and its test crop size."""
    import dinat_mm  # noqa: F401  (registers DiNAT)
    from dinat_mm.registry import scope_models
    cfg = peer_config(CLASSIFIERS, name, 'mmpretrain')
    cfg.model.backbone.pop('init_cfg', None)
    cfg.model.backbone.drop_path_rate = 0.0
    model = scope_models('mmpretrain').build(cfg.model).eval()
    return model, cfg.test_pipeline[-2].crop_size


def build_detector(name: str, device: str = 'cpu', images=((800, 1216),), train: bool = False):
    """The whole Mask R-CNN of the config, random weights, and a callable: with ``train`` a
    training step (loss, backward, SGD step) on ``images`` with random instances, else prediction
    in eval mode. The callable carries the model and the preprocessed inputs."""
    import dinat_mm  # noqa: F401
    from dinat_mm.registry import scope_models
    from mmdet.testing import demo_mm_inputs
    from mmengine.logging import MMLogger
    cfg = detector_config(name)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = scope_models('mmdet').build(cfg.model).to(device)
    # mmdet's initialisation of the heads (as at the start of training): near-zero box deltas, so
    # both detectors propose boxes near the same anchors and RoIAlign (whose cost grows with box
    # size) does comparable work; with PyTorch's default init the proposals differ at random.
    mm_logger = MMLogger.get_current_instance()
    level = mm_logger.level
    mm_logger.setLevel(logging.ERROR)  # init_weights logs every parameter (and Swin-T's lack of a checkpoint)
    try:
        model.init_weights()
    finally:
        mm_logger.setLevel(level)
    if train:
        model.train()
        data = model.data_preprocessor(demo_mm_inputs(len(images), [(3, *hw) for hw in images],
                                                      num_items=[3] * len(images), with_mask=True), True)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

        def step():
            loss, _ = model.parse_losses(model(**data, mode='loss'))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        step.model, step.inputs = model, data['inputs']
        return step
    model.eval()  # (mmdet's SwinTransformer.train() returns None: never chain it)
    data = model.data_preprocessor(demo_mm_inputs(len(images), [(3, *hw) for hw in images],
                                                  num_items=[1] * len(images)), False)

    def predict():
        with torch.no_grad():
            model(**data, mode='predict')
    predict.model, predict.inputs = model, data['inputs']
    return predict


def status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def reset_peak() -> int:
    """Restart the peak-RSS counter (Linux >= 4.0) and return the current RSS in bytes. ru_maxrss
    would not do: a child inherits its parent's high-water mark across fork and exec."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return status_kib('VmRSS') * 1024
