"""One image through a Hugging Face DiNAT classifier folder both ways: in transformers (after
:func:`dinat_mm.hf.enable`) and loaded whole into a config's mmpretrain classifier. Both get the
same input tensor, made by the config's test pipeline and data preprocessor."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

from .. import hf
from ..checkpoint import load_into_classifier
from ..errors import UserError
from ..registry import scope_models
from .config import load_config


def compare(folder: str, config_path: str, image: str, topk: int = 5) -> Dict:
    """The top-``topk`` (class name, probability) of each way, and the largest logit difference."""
    weights = Path(folder) / 'model.safetensors'
    for path, what in ((Path(folder) / 'config.json', 'hub folder'), (weights, 'hub folder'), (Path(image), 'image')):
        if not path.is_file():
            raise UserError(f'{what}: {path} not found')
    cfg = load_config(config_path)
    if cfg.get('default_scope') != 'mmpretrain':
        raise UserError(f'{config_path}: not an mmpretrain classifier config (default_scope '
                        f'{cfg.get("default_scope")!r})')
    hf.enable()
    from transformers import AutoModelForImageClassification
    theirs = AutoModelForImageClassification.from_pretrained(folder).eval()
    ours = scope_models('mmpretrain').build(cfg.model).eval()
    load_into_classifier(ours, str(weights))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        sample = Compose(cfg.test_dataloader.dataset.pipeline)(dict(img_path=image))
    with torch.no_grad():
        inputs = ours.data_preprocessor(pseudo_collate([sample]))['inputs']
        logits = dict(transformers=theirs(pixel_values=inputs).logits[0], dinat_mm=ours(inputs, mode='tensor')[0])
    names = theirs.config.id2label
    return dict(input=tuple(inputs.shape), max_logit_difference=float((logits['transformers'] - logits['dinat_mm']).abs().max()),
                top={way: _top(values, names, topk) for way, values in logits.items()})


def _top(logits: torch.Tensor, names: Dict[int, str], k: int) -> List[Tuple[str, float]]:
    probs = logits.softmax(-1)
    values, index = probs.topk(k)
    return [(names.get(int(i), str(int(i))), float(v)) for v, i in zip(values, index)]


def table(result: Dict) -> str:
    top = result['top']
    lines = [f'input {result["input"]}', f'{"rank":<5}{"transformers + dinat_mm.hf":<36}{"dinat_mm in mmpretrain":<36}']
    for rank, (a, b) in enumerate(zip(top['transformers'], top['dinat_mm']), 1):
        lines.append(f'{rank:<5}{a[0][:24]:<26}{a[1]:<10.4f}{b[0][:24]:<26}{b[1]:<10.4f}')
    same = [a[0] for a in top['transformers']] == [b[0] for b in top['dinat_mm']]
    lines.append(f'same top classes: {"yes" if same else "NO"}; largest logit difference: '
                 f'{result["max_logit_difference"]:.2e}')
    return '\n'.join(lines)
