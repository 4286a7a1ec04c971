"""Test-session set-up and the fixtures several modules share: the toy datasets and a checkpoint
trained on each by tools/train.py, made once per session."""
import os

import pytest

# Triton decides at decoration time whether its kernels are compiled or interpreted: set before any
# test imports dinat_mm.ops.triton_kernels, so the Triton backend runs its kernels on CPU tensors in
# Triton's interpreter (tests/test_triton.py). CUDA-less 'auto' dispatch is unaffected: on CPU it
# never picks the Triton kernels.
os.environ['TRITON_INTERPRET'] = '1'

# Under pytest-xdist (`make test`: two workers on the CI machine's two cores) each worker, and every
# tool it starts, computes on one thread: two workers of two threads each would contend for the cores.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ['OMP_NUM_THREADS'] = '1'
    import torch
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The tests that build Mask2Former or DiNAT-L at full width need several GB each: they run
    on one worker, one after another (xdist's loadgroup), never two at once. The readers of a
    trained toy checkpoint share a worker too: each worker would train its own."""
    for item in items:
        if 'mask2former' in item.nodeid or 'dinat_large' in item.nodeid:
            item.add_marker(pytest.mark.xdist_group('full_width_dinat_large'))
        else:
            for fixture in ('det_checkpoint', 'seg_checkpoint'):
                if fixture in getattr(item, 'fixturenames', ()):
                    item.add_marker(pytest.mark.xdist_group(fixture))

from tests.helpers.tools import (DET_TOY, SEG_TOY, run_python, toy_ade_options, toy_coco_options,  # noqa: E402
                                  train_options)


@pytest.fixture(scope='session')
def toy_coco(tmp_path_factory):
    from dinat_mm.toydata import make_toy_coco
    return make_toy_coco(tmp_path_factory.mktemp('data') / 'toy_coco', num_train=16, num_val=4, seed=1)


@pytest.fixture(scope='session')
def toy_ade(tmp_path_factory):
    from dinat_mm.toydata import make_toy_ade
    return make_toy_ade(tmp_path_factory.mktemp('data') / 'toy_ade', num_train=8, num_val=3, seed=2)


@pytest.fixture(scope='session')
def det_checkpoint(toy_coco, tmp_path_factory):
    """The toy Mask R-CNN DiNAT-Mini after one iteration of tools/train.py."""
    work = tmp_path_factory.mktemp('det_work')
    run_python('tools/train.py', DET_TOY, *train_options(work, 1, *toy_coco_options(toy_coco)))
    return work / 'iter_1.pth'


@pytest.fixture(scope='session')
def seg_checkpoint(toy_ade, tmp_path_factory):
    """The toy UPerNet DiNAT-Mini after one iteration of tools/train.py."""
    work = tmp_path_factory.mktemp('seg_work')
    run_python('tools/train.py', SEG_TOY, *train_options(work, 1, *toy_ade_options(toy_ade)))
    return work / 'iter_1.pth'
