"""``rank_zero_first`` under ``paddle.distributed.launch``: what ``eval --nproc N`` builds
(its export, its INT8 model) is built by rank 0 before the other ranks start, so that they
read it from the cache instead of all making it at once; and rank 0's failure ends every
rank instead of leaving them waiting."""
import subprocess
import sys

import pytest

from helpers import child_env

pytestmark = pytest.mark.full

SCRIPT = '''
import sys, time
from paddle_dla.evaluation.metrics import distributed_rank, rank_zero_first
rank, world = distributed_rank()
log, fail = sys.argv[1], sys.argv[2] == 'fail'

def build():
    with open(log, 'a') as f:
        f.write(f'start {rank}\\n')
    time.sleep(1.0)  # long enough for a rank that did not wait to start meanwhile
    if fail:
        raise ValueError('the model could not be built')
    with open(log, 'a') as f:
        f.write(f'end {rank}\\n')
    return rank

print('built by rank', rank_zero_first(build, rank, world))
'''


def _launch(tmp_path, mode):
    script = tmp_path / 'build.py'
    script.write_text(SCRIPT)
    log = tmp_path / 'events.txt'
    proc = subprocess.run(
        [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
         '--log_dir', str(tmp_path / 'logs'), str(script), str(log), mode],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=child_env())
    events = log.read_text().splitlines() if log.exists() else []
    logs = {r: (tmp_path / 'logs' / f'workerlog.{r}').read_text() for r in (0, 1)}
    return proc, events, logs


def test_rank_zero_builds_before_the_others(tmp_path):
    proc, events, logs = _launch(tmp_path, 'ok')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert events == ['start 0', 'end 0', 'start 1', 'end 1'], events
    assert 'built by rank 0' in logs[0] and 'built by rank 1' in logs[1]


def test_a_failure_on_rank_zero_ends_every_rank_with_its_message(tmp_path):
    proc, events, logs = _launch(tmp_path, 'fail')
    assert proc.returncode != 0
    assert events == ['start 0'], events  # rank 1 never built
    assert 'ValueError: the model could not be built' in logs[0]
    assert 'rank 0 could not set up the model: the model could not be built' in logs[1]
