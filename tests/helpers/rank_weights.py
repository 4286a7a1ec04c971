"""A hook for the distributed tests: every rank saves its own weights and buffers after training
(mmengine's checkpoints hold rank 0's only). Imported by a test config's custom_imports."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module(force=True)
class SaveRankWeightsHook(Hook):
    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
                   osp.join(runner.work_dir, f'rank{get_rank()}_weights.pth'))
