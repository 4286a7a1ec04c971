"""Parameters and FLOPs of DiNAT models with mmengine's complexity analysis, counting neighborhood
attention as exactly 2 * N * k^2 * head_dim * heads multiply-adds (QK and AV), whatever tiling
the implementation uses. (mmengine, like fvcore, reports multiply-adds as "FLOPs".)"""
from __future__ import annotations

from typing import Any, List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape


def na2d_flop_handle(inputs: List[Any], outputs: List[Any]) -> int:
    batch, heads, height, width, head_dim = get_shape(inputs[0])
    _, table_h, table_w = get_shape(inputs[3])
    window = ((table_h + 1) // 2) * ((table_w + 1) // 2)
    return 2 * batch * heads * height * width * window * head_dim


def flop_analyzer(model: torch.nn.Module, inputs) -> FlopAnalyzer:
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('prim::PythonOp.NA2DTraced', na2d_flop_handle)
    return analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def count(model: torch.nn.Module, inputs) -> dict:
    """{'params': total parameters, 'flops': multiply-adds of one forward on ``inputs``,
    'by_part': those of each direct child module that has any, e.g. backbone, neck, heads (operations
    outside every child, such as a head's functional mask products, are not in any part)}."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        analyzer = flop_analyzer(model, inputs)
        flops, by_module = analyzer.total(), analyzer.by_module()
    model.train(was_training)
    by_part = {name: by_module[name] for name, _ in model.named_children() if by_module.get(name)}
    return dict(params=sum(p.numel() for p in model.parameters()), flops=flops, by_part=by_part)
