"""Outputs of several files (an export, an INT8 export) reach their folder whole: the
metadata last, one writer's set rather than a mix of two, and nothing moved when a move
fails. ``paddle-dla cache clean`` leaves alone what another process is using."""
import os
import subprocess
import sys

import pytest
from filelock import FileLock

from paddle_dla.core import atomic
from paddle_dla.core.atomic import atomic_folder_output
from paddle_dla.weights.cache import folder_lock, lock_path
from helpers import child_env
from hostile import run_module

pytestmark = pytest.mark.paddle_compat

FILES = ('m.dla.json', 'm.json', 'm.pdiparams', 'm.int8.xml')


def _write(tmp, text, files=FILES):
    for name in files:
        with open(os.path.join(tmp, name), 'w') as f:
            f.write(text)


def test_the_metadata_moves_last(tmp_path, monkeypatch):
    """A reader who finds the metadata (compile_model's sign of a finished cache entry)
    finds every other file."""
    moved, replace = [], os.replace

    def recording(src, dst):
        moved.append(os.path.basename(dst))
        replace(src, dst)
    monkeypatch.setattr(atomic.os, 'replace', recording)
    with atomic_folder_output(tmp_path / 'out', last='.dla.json') as tmp:
        _write(tmp, 'new')
    assert moved[-1] == 'm.dla.json' and sorted(moved) == sorted(FILES)


def test_a_folder_in_the_way_moves_nothing(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    _write(out, 'old', FILES[:2])
    (out / 'm.pdiparams').mkdir()
    with pytest.raises(IsADirectoryError, match='m.pdiparams'):
        with atomic_folder_output(out, last='.dla.json') as tmp:
            _write(tmp, 'new')
    assert sorted(os.listdir(out)) == ['m.dla.json', 'm.json', 'm.pdiparams']
    assert (out / 'm.json').read_text() == 'old' and (out / 'm.dla.json').read_text() == 'old'
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def test_a_move_that_fails_puts_back_what_was_there(tmp_path, monkeypatch):
    out = tmp_path / 'out'
    out.mkdir()
    _write(out, 'old')
    replace, calls = os.replace, []

    def failing_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise PermissionError(13, 'Permission denied', dst)
        replace(src, dst)
    monkeypatch.setattr(atomic.os, 'replace', failing_third)
    with pytest.raises(PermissionError):
        with atomic_folder_output(out, last='.dla.json') as tmp:
            _write(tmp, 'new')
    assert sorted(os.listdir(out)) == sorted(FILES)
    assert {(out / n).read_text() for n in FILES} == {'old'}


_WRITER = '''
import os, sys, time
from paddle_dla.core import atomic
from paddle_dla.core.atomic import atomic_folder_output
from paddle_dla.weights.cache import folder_lock
out, text, go = sys.argv[1], sys.argv[2], sys.argv[3]
replace, moves = os.replace, []
def slow(src, dst):  # the writers move at different paces: without the lock, they interleave
    time.sleep(0.1 if text == 'a' else 0.4 if moves else 0.0)
    moves.append(dst)
    replace(src, dst)
atomic.os.replace = slow
with atomic_folder_output(out, last='.dla.json', lock=folder_lock(out)) as tmp:
    for name in %r:
        with open(os.path.join(tmp, name), 'w') as f:
            f.write(text)
    open(go, 'w').close()
    while not all(os.path.exists(go[:-1] + c) for c in 'ab'):
        time.sleep(0.01)
''' % (FILES,)


def test_two_writers_of_one_folder_leave_one_set(tmp_path):
    """Two processes move their files into one folder at the same moment, at paces that
    would interleave them: the folder ends with every file from one of them, not a mix."""
    out = tmp_path / 'out'
    env = child_env(PADDLE_DLA_HOME=str(tmp_path / 'home'))
    children = [subprocess.Popen([sys.executable, '-c', _WRITER, str(out), text,
                                  str(tmp_path / f'go{text}')], env=env) for text in 'ab']
    assert [c.wait(timeout=120) for c in children] == [0, 0]
    assert len({(out / n).read_text() for n in FILES}) == 1


def test_a_lock_that_cannot_be_taken_does_not_stop_the_output(tmp_path, monkeypatch):
    """The lock only coordinates writers; the output is the user's: a cache whose lock file
    cannot be opened (here a folder in its place) leaves the files written, unlocked."""
    import hashlib
    monkeypatch.setenv('PADDLE_DLA_HOME', str(tmp_path / 'home'))
    out = tmp_path / 'out'
    name = hashlib.sha256(str(out).encode()).hexdigest()[:20]
    os.makedirs(lock_path(f'output-{name}'))
    with atomic_folder_output(out, last='.dla.json', lock=folder_lock(out)) as tmp:
        _write(tmp, 'new')
    assert sorted(os.listdir(out)) == sorted(FILES)


def test_cache_clean_keeps_what_another_process_is_using(tmp_path, monkeypatch):
    """A held lock and the export it guards stay; a free lock, a folder in a lock's place,
    the derived exports and the remembered choices go."""
    home = tmp_path / 'home'
    env = {'PADDLE_DLA_HOME': str(home)}
    monkeypatch.setenv('PADDLE_DLA_HOME', str(home))
    exports = home / 'compiled' / 'exports'
    for name in ('busy', 'idle'):
        (exports / name / 'int8-x').mkdir(parents=True)
        (exports / name / 'model.json').write_text('{}')
        (exports / name / 'int8-x' / 'model.int8.bin').write_text('int8')
    (exports / '.idle.abc123.tmp').mkdir()  # an interrupted export's leftover
    (home / 'compiled' / 'engine-choice.json').write_text('{}')
    held = FileLock(lock_path('compiled-busy'))
    free = FileLock(lock_path('dla_34-official.pdparams'))
    free.acquire()
    free.release()
    (home / '.locks' / 'compiled-odd.lock').mkdir()
    with held:
        proc = run_module('cache', 'clean', env=env)
    assert proc.returncode == 0, proc.stderr
    assert f'kept {exports / "busy"}: another process is using it' in proc.stdout
    assert (exports / 'busy' / 'int8-x' / 'model.int8.bin').exists()
    assert sorted(os.listdir(exports)) == ['busy']
    assert not (home / 'compiled' / 'engine-choice.json').exists()
    assert sorted(os.listdir(home / '.locks')) == ['compiled-busy.lock']
    assert '4 files removed' in proc.stdout, proc.stdout  # 2 of idle, the choices, a lock

