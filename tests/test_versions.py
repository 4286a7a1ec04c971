"""dinat_mm_versions: version parsing, and the mmpretrain multimodal gate that transformers >= 4.56
needs (mmpretrain 1.2.0's multimodal models import names transformers 4.56 removed)."""
import pytest

from dinat_mm_versions import major_minor
from tests.helpers.tools import run_python


@pytest.mark.parametrize('text, want', [('4.57.6', (4, 57)), ('5.0.0rc1', (5, 0)), ('10.2', (10, 2)),
                                        ('main', None), ('5', None), ('5.x.1', None)])
def test_major_minor(text, want):
    assert major_minor(text) == want


def test_the_environment_closes_the_gate_at_start_up_before_anything_imports_mmpretrain():
    """The .pth the set-up writes: mmpretrain imported first, as mmseg.apis and mmdet do."""
    run = run_python('-c', '''
        import mmpretrain.utils.dependency as dependency
        import mmpretrain.models  # fails with the gate open
        print('multimodal', dependency.WITH_MULTIMODAL)
        ''')
    assert 'multimodal False' in run.stdout


def test_closing_after_mmpretrain_dependency_was_imported_still_closes_it():
    """Without the start-up hook (removed here), the gate is open until dinat_mm_versions closes it."""
    run = run_python('-c', '''
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != '_Gate']
        import mmpretrain.utils.dependency as dependency
        print('before', dependency.WITH_MULTIMODAL)
        import dinat_mm_versions
        dinat_mm_versions.close_mmpretrain_multimodal_gate()
        print('after', dependency.WITH_MULTIMODAL)
        ''')
    assert 'before True' in run.stdout and 'after False' in run.stdout
