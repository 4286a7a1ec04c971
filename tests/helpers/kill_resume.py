"""Kill a tools/train.py run with SIGKILL, at chosen points, and resume it with --resume until it ends."""
import glob
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from dinat_mm.checkpoint import load_checkpoint_file

REPO = Path(__file__).resolve().parents[2]


class Run:
    """One tools/train.py process whose output is read line by line in the background."""

    def __init__(self, args):
        self.proc = subprocess.Popen([sys.executable, 'tools/train.py', *map(str, args)], cwd=REPO, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED='1'))
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def iterations_done(self):
        done = [int(m.group(1)) for line in list(self.lines) for m in [re.search(r'Iter\(train\) \[\s*(\d+)/', line)] if m]
        return max(done, default=0)

    def resumed_at(self):
        found = re.findall(r'resumed epoch: \d+, iter: (\d+)', self.output())
        return int(found[-1]) if found else 0

    def kill(self):
        os.killpg(self.proc.pid, signal.SIGKILL)  # the data-loader workers too
        self.proc.wait()
        self.reader.join(10)

    def output(self):
        return ''.join(self.lines)


def _wait(condition, run, what, timeout=600):
    end = time.time() + timeout
    while not condition():
        if run.proc.poll() is not None:
            raise AssertionError(f'the run ended before {what}:\n{run.output()[-3000:]}')
        if time.time() > end:
            run.kill()
            raise AssertionError(f'timed out waiting for {what}:\n{run.output()[-3000:]}')
        time.sleep(0.0005)


def assert_resumable(work: Path):
    """Every committed checkpoint loads, and last_checkpoint (if any) names one of them."""
    for path in glob.glob(str(work / '*.pth')):
        load_checkpoint_file(path)
    pointer = work / 'last_checkpoint'
    if pointer.exists():
        load_checkpoint_file(pointer.read_text().strip())


def checkpoint_files(work: Path):
    """Every file in ``work`` that a checkpoint save could be writing, hidden ones included, as
    (path, inode, change time): a file written again under an old name counts as new."""
    found = set()
    for name in os.listdir(work) if work.is_dir() else ():
        if '.pth' in name:
            try:
                st = os.stat(work / name)
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
            found.add((work / name, st.st_ino, st.st_ctime_ns))
    return found


def _loads(path):
    try:
        load_checkpoint_file(path)
        return True
    except Exception:
        return False


def train_with_kills(args, work: Path, max_iters: int, kills, seed=0, decoy=True):
    """Run ``tools/train.py *args --resume``, killing it once per entry of ``kills``: 'save' kills it
    as soon as a new checkpoint file appears (whatever its name: the save is under way), 'random'
    after a random number of further iterations plus a random delay. After each kill, every
    committed checkpoint must load. Then (``decoy``) a truncated file is put in place as the newest
    checkpoint, as a full disk would leave it, and the run is resumed once more to its end.
    Returns (how many kills left an uncommitted checkpoint file behind, (kind, resumed at,
    iterations done) per kill, the last run's output)."""
    rng = random.Random(seed)
    during_save, log = 0, []
    for kind in kills:
        before = checkpoint_files(work)
        run = Run([*args, '--resume'])
        if kind == 'save':
            _wait(lambda: checkpoint_files(work) - before, run, 'a checkpoint save')
            run.kill()
            new = [p for p, *_ in checkpoint_files(work) - before]
            during_save += any(p.name.startswith('.') or not _loads(p) for p in new)
        else:
            _wait(lambda: run.iterations_done() > 0, run, 'the first iteration')
            # three or four iterations on: a save is committed before, the next may be under way
            target = min(run.resumed_at() + rng.randint(3, 4), max_iters - 1)
            _wait(lambda: run.iterations_done() >= target, run, f'iteration {target}')
            time.sleep(rng.uniform(0, 1.5))
            run.kill()
        assert run.proc.returncode == -signal.SIGKILL, run.output()[-3000:]
        log.append((kind, run.resumed_at(), run.iterations_done()))
        assert_resumable(work)
    if decoy:
        truncated = work / f'iter_{max_iters + 100}.pth'
        torch.save({'state_dict': {'w': torch.zeros(1 << 16)}}, truncated)
        truncated.write_bytes(truncated.read_bytes()[:1 << 17])
        (work / 'last_checkpoint').write_text(str(truncated))
    run = Run([*args, '--resume'])
    run.proc.wait(timeout=900)
    log.append(('none', run.resumed_at(), run.iterations_done()))
    run.reader.join(10)
    assert run.proc.returncode == 0, run.output()[-4000:]
    return during_save, log, run.output()


def assert_same_training_state(a: Path, b: Path):
    """Two training checkpoints hold the same iteration, weights and optimizer state, bit for bit."""
    a, b = load_checkpoint_file(a), load_checkpoint_file(b)
    assert a['meta']['iter'] == b['meta']['iter']
    for key in a['state_dict']:
        assert torch.equal(a['state_dict'][key], b['state_dict'][key]), key
    for (i, x), (j, y) in zip(a['optimizer']['state'].items(), b['optimizer']['state'].items()):
        assert i == j and all(torch.equal(x[n], y[n]) for n in x), f'optimizer state of parameter {i}'
