"""Running the tools (and other Python) in fresh interpreters, as a user does, or, for their
refusals, in this one."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple, Optional

REPO = Path(__file__).resolve().parents[2]
DET_TOY = 'configs/toy/maskrcnn_dinat_mini_toy.py'
SEG_TOY = 'configs/toy/upernet_dinat_mini_toy.py'
CLS_TOY = 'configs/toy/classifier_dinat_mini_toy.py'


class Run(NamedTuple):
    code: int
    stdout: str
    stderr: str

    @property
    def log(self) -> str:
        return self.stdout + self.stderr


def run_python(*args, ok: bool = True, cwd=REPO, env: Optional[dict] = None, timeout: int = 900) -> Run:
    """``python ARGS`` in a fresh interpreter: a tool's path and its arguments, or ``-c CODE``.
    With ``ok`` the run must succeed."""
    args = [str(a) for a in args]
    if args[:1] == ['-c']:
        args[1] = textwrap.dedent(args[1])
    out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    run = Run(out.returncode, out.stdout, out.stderr)
    if ok:
        assert run.code == 0, f'{args} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}'
    return run


def run_tool_here(tool, *args) -> Run:
    """``python TOOL ARGS`` as ``__main__`` in this interpreter, from the repository root: its exit
    code and what it printed. For refusals, which end before any work: a fresh interpreter spends
    about 11 s importing OpenMMLab first (docs/development.md). An exception that the tool does not turn into a message
    propagates (a user would see a traceback) and fails the test."""
    from mmengine.visualization import Visualizer
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    runners_before = set(Visualizer._instance_dict)  # each Runner makes one, which outlives it
    sys.argv = [str(tool), *map(str, args)]
    code = 0
    try:
        os.chdir(REPO)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(REPO / tool), run_name='__main__')
            except SystemExit as exit_:  # sys.exit('message') prints the message to stderr, and exits 1
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    # a Runner leaves process-wide instances behind (its visualizer, bound to its work dir): a run
    # that gets that far belongs in a fresh interpreter (run_python)
    assert set(Visualizer._instance_dict) == runners_before, f'{tool} built a Runner: use run_python'
    return Run(code, out.getvalue(), err.getvalue())


def load_tool(name: str):
    """``tools/NAME.py`` as a module, to call its ``main(argv)`` in this process."""
    spec = importlib.util.spec_from_file_location(f'tools_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_coco_options(root) -> list:
    """--cfg-options entries that point a COCO-layout config at the toy set in ``root``."""
    return [f'{loader}.dataset.data_root={root}/' for loader in ('train_dataloader', 'val_dataloader',
                                                                  'test_dataloader')] + \
        [f'{ev}.ann_file={root}/annotations/instances_val.json' for ev in ('val_evaluator', 'test_evaluator')]


def toy_ade_options(root) -> list:
    """--cfg-options entries that point an ADE20K-layout config at the toy set in ``root``."""
    return [f'{loader}.dataset.data_root={root}' for loader in ('train_dataloader', 'val_dataloader',
                                                                 'test_dataloader')]


def toy_imagenet_options(root) -> list:
    """--cfg-options entries that point a class-folder config at the toy set in ``root``."""
    return [f'{loader}.dataset.data_root={root}' for loader in ('train_dataloader', 'val_dataloader',
                                                                 'test_dataloader')]


# No validation loop: mmengine's train loops validate after the last iteration or epoch whatever
# val_interval says. Last among the options, or a later val_dataloader.* entry re-creates a loader.
NO_VAL = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']


def train_options(work, iters: int, *extra, validate: bool = False) -> list:
    """tools/train.py options for a short run that checkpoints at its last iteration and, unless
    ``validate``, has no validation loop."""
    return ['--work-dir', work, '--cfg-options', f'train_cfg.max_iters={iters}',
            f'default_hooks.checkpoint.interval={iters}', *extra, *([] if validate else NO_VAL)]


# One training iteration of an iteration-based config (UPerNet, Mask2Former), without validation.
# It saves no AdamW state, which test.py does not read: Mask2Former DiNAT-L's checkpoint is 0.9 GB
# of weights, 2.6 GB with it.
ONE_ITER = ['train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.save_optimizer=False', *NO_VAL]


def as_shipped(data_root, *evaluator_options, train_images: int = 1) -> list:
    """--cfg-options for running a shipped config as it is: the data root of its three loaders, its
    evaluators' files, no ImageNet download and no worker processes; of the toy set, ``train_images``
    training images (one batch: the shipped configs' batch size is at most 2; UPerNet's pooled BN
    needs 2) and 1 test image (mmengine's ``indices``): one iteration and one prediction check the wiring."""
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    return [f'{loader}.dataset.data_root={data_root}/' for loader in loaders] + list(evaluator_options) + \
        [f'{loader}.num_workers=0' for loader in loaders] + \
        [f'{loader}.persistent_workers=False' for loader in loaders] + ['model.backbone.init_cfg=None'] + \
        [f'{loader}.dataset.indices={train_images if loader.startswith("train") else 1}' for loader in loaders]


# The toy configs' DiNAT-Mini cut to five layers (one of them dilated per level that fits it): for
# the tests whose cost grows with the layer count (compiling, ONNX export) and not with what they check.
FEW_LAYERS = ['model.backbone.depths=[1,1,2,1]', 'model.backbone.dilations=[[1],[2],[1,2],[1]]']
# Mask2Former DiNAT-L's backbone cut to one layer per level but two in the third (its widths, heads,
# kernel and a dilated layer in each level whose config has one), for the runs that check the
# config's wiring through the tools: the full depth is counted at full size elsewhere and adds
# only time here.
SHALLOW_DINAT_L = ['model.backbone.depths=[1,2,2,1]', 'model.backbone.dilations=[[14],[1,7],[1,3],[1]]']
