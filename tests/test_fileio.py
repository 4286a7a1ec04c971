"""dinat_mm.fileio.written_atomically: a reader sees the old content or the complete new one, and
nothing is left half-written, for files and folders."""
from pathlib import Path

import pytest

from dinat_mm.fileio import partial_path, write_text_atomically, written_atomically


def test_a_file_is_replaced_whole_and_only_when_the_block_ends(tmp_path):
    target = tmp_path / 'model.pth'
    target.write_text('old')
    with written_atomically(target) as partial:
        with open(partial, 'w') as f:
            f.write('new')
        assert target.read_text() == 'old'  # not yet in place
    assert target.read_text() == 'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.pth']


def test_an_error_in_the_block_keeps_the_old_file_and_removes_the_partial_one(tmp_path):
    target = tmp_path / 'model.onnx'
    target.write_text('old')
    with pytest.raises(RuntimeError, match='export failed'):
        with written_atomically(target) as partial:
            with open(partial, 'w') as f:
                f.write('half')
            raise RuntimeError('export failed')
    assert target.read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.onnx']


def test_a_block_that_writes_nothing_is_an_error_and_changes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing was written'):
        with written_atomically(tmp_path / 'x.pth'):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_folder_replaces_an_existing_folder_whole(tmp_path):
    target = tmp_path / 'toy'
    target.mkdir()
    (target / 'stale.json').write_text('{}')
    with written_atomically(target) as partial:
        Path(partial).mkdir()
        (Path(partial) / 'a.jpg').write_bytes(b'jpg')
    assert sorted(p.name for p in target.iterdir()) == ['a.jpg']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['toy']


def test_a_partial_file_left_by_a_killed_writer_is_replaced(tmp_path):
    target = tmp_path / 'last_checkpoint'
    leftover = tmp_path / '.last_checkpoint.partial'
    assert partial_path(target) == str(leftover)
    leftover.write_text('from a writer that was killed')
    write_text_atomically(target, 'iter_4.pth')
    assert target.read_text() == 'iter_4.pth' and not leftover.exists()
