"""How 'auto' measures and remembers, on engines made of NumPy: what a candidate must meet
before its speed counts, the class of inputs a choice holds for, and the file of remembered
choices that several processes write at once. The real engines are in test_engines.py."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from paddle_dla.core.machine import usable_cpus
from paddle_dla.core.parity import BFLOAT16_LIMIT, FLOAT32_LIMIT
from paddle_dla.inference import runtimes
from paddle_dla.inference.runtimes import (EngineUnavailable, choose_engine, disagreement,
                                           input_class, measure_engines)
from paddle_dla.inference.predictor import _recorded_engine
from helpers import child_env

pytestmark = pytest.mark.paddle_compat

LOGITS = np.random.default_rng(0).standard_normal((4, 10)).astype('float32') * 5
BATCH = np.zeros((4, 3, 8, 8), 'float32')


class Engine:
    """An engine that returns ``LOGITS`` (plus ``shift``) for a batch's rows, and raises
    on the calls ``fails`` selects (by batch size, or from its ``nth`` call on)."""

    def __init__(self, name, shift=0.0, fails_above=None, fails_from=None):
        self.name, self.shift, self.calls = name, shift, 0
        self.fails_above, self.fails_from = fails_above, fails_from

    def __call__(self, batch):
        return self.all_outputs(batch)[0]

    def all_outputs(self, batch):
        self.calls += 1
        if self.fails_above is not None and len(batch) > self.fails_above:
            raise RuntimeError(f'{self.name}: no kernel for batch {len(batch)}')
        if self.fails_from is not None and self.calls >= self.fails_from:
            raise RuntimeError(f'{self.name}: kernel failed on call {self.calls}')
        return [LOGITS[:len(batch)] + self.shift]


def test_a_candidate_counts_only_when_it_agrees_with_paddle():
    engines = {'paddle': Engine('paddle'), 'openvino': Engine('openvino'),
               'onnxruntime': Engine('onnxruntime', shift=1.0)}
    rates, failed = measure_engines(engines, BATCH)
    assert set(rates) == {'paddle', 'openvino'}
    assert 'differs from Paddle Inference' in failed['onnxruntime']


def test_where_paddle_fails_on_the_batch_its_first_image_is_the_reference():
    """Paddle Inference's bfloat16 kernels fail at batch > 1 on some graphs: the others are
    then held to its first image's outputs, not waved through."""
    engines = {'paddle': Engine('paddle', fails_above=1), 'openvino': Engine('openvino'),
               'onnxruntime': Engine('onnxruntime', shift=1.0)}
    rates, failed = measure_engines(engines, BATCH)
    assert set(rates) == {'openvino'}
    assert 'no kernel for batch 4' in failed['paddle']
    assert 'differs from Paddle Inference' in failed['onnxruntime']


def test_where_paddle_runs_nothing_no_engine_is_chosen_unchecked():
    engines = {'paddle': Engine('paddle', fails_above=0), 'openvino': Engine('openvino')}
    rates, failed = measure_engines(engines, BATCH)
    assert rates == {} and failed['openvino'].startswith('not compared')
    with pytest.raises(EngineUnavailable, match='agree with Paddle Inference.*openvino: not '
                                                'compared'):
        choose_engine(engines, BATCH)


def test_an_engine_failing_while_it_is_timed_is_left_out_with_its_error():
    engines = {'paddle': Engine('paddle'), 'openvino': Engine('openvino', fails_from=3)}
    name, rates, failed = choose_engine(engines, BATCH)
    assert name == 'paddle' and set(rates) == {'paddle'}
    assert 'kernel failed on call 3' in failed['openvino']


def test_float32_top1_is_held_to_the_standards_gap():
    """A reference gap of 0.015 at logits near 20 is decided (above 1e-2): a float32
    engine within 1e-3 relative error that swaps it disagrees; bfloat16, whose error may
    exceed the gap, is held to its own."""
    reference = [np.array([[20.0, 19.985, 0.0]], 'float32')]
    swapped = [np.array([[19.992, 19.993, 0.0]], 'float32')]
    assert 'top-1 differs' in disagreement(swapped, reference, FLOAT32_LIMIT)
    assert disagreement(swapped, reference, BFLOAT16_LIMIT) is None
    assert disagreement(reference, reference, FLOAT32_LIMIT) is None


@pytest.mark.parametrize('record', [
    {'engine': ['openvino']}, {'engine': {'a': 1}}, {'engine': 'tensorrt'}, 'openvino', None,
    {'engine': 'paddle', 'images_per_s': 'fast'}, {'engine': 'paddle', 'images_per_s': [1]},
    {'engine': 'paddle', 'images_per_s': {'paddle': 'fast'}},
    {'engine': 'paddle', 'images_per_s': {'paddle': True}},
])
def test_a_record_that_is_not_one_names_no_engine(record):
    """The file is a cache any process may have written (test_engines.py shows a
    Predictor measuring again over each of these)."""
    assert _recorded_engine(record) is None


def test_a_record_names_its_engine():
    assert _recorded_engine({'engine': 'openvino', 'images_per_s': {'openvino': 3.5}}) == \
        'openvino'
    assert _recorded_engine({'engine': 'paddle'}) == 'paddle'


def test_the_input_class_has_the_area_only_where_the_export_leaves_it_free():
    dynamic, fixed = [None, 3, None, None], [None, 3, 224, 224]
    assert input_class((1, 3, 224, 224), fixed) == '1'
    assert input_class((8, 3, 224, 224), fixed) == '8+'
    assert input_class((2, 3, 224, 224), dynamic) == '2-7, 64 kpx'
    assert input_class((2, 3, 160, 224), dynamic) == '2-7, 32 kpx'
    assert input_class((2, 3, 1024, 2048), dynamic) == '2-7, 2048 kpx'
    assert input_class((1, 3, 16, 16), dynamic) == '1, 256 px'
    assert input_class((1, 3, 64, 64), None) == '1, 4 kpx'  # no shape recorded: free


_WRITER = '''
import sys
from paddle_dla.inference.runtimes import remember_choice
start, ready, go = sys.argv[1], sys.argv[2], sys.argv[3]
open(ready, 'w').close()
import os, time
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(20):
    remember_choice(f'{start} key {i}', {'engine': 'paddle', 'images_per_s': {'paddle': 1.0}})
'''


def test_processes_remembering_at_once_lose_no_record(tmp_path):
    """Four processes each remember 20 choices at the same moment: every record is in the
    file afterwards (without the file's lock, records were lost: 30 of 80 kept in one run)."""
    home = tmp_path / 'home'
    env = child_env(PADDLE_DLA_HOME=str(home))
    go = tmp_path / 'go'
    readies = [tmp_path / f'ready-{n}' for n in range(4)]
    children = [subprocess.Popen([sys.executable, '-c', _WRITER, f'process {n}', str(ready),
                                  str(go)], env=env)
                for n, ready in enumerate(readies)]
    try:
        for ready in readies:
            for _ in range(6000):
                if ready.exists() or any(c.poll() is not None for c in children):
                    break
                time.sleep(0.01)
        go.touch()
        assert [c.wait(timeout=120) for c in children] == [0] * 4
    finally:
        for child in children:
            child.kill()
    saved = json.loads((home / 'compiled' / 'engine-choice.json').read_text())
    assert sorted(saved) == sorted(f'process {n} key {i}' for n in range(4) for i in range(20))


def test_forgetting_an_engine_drops_its_choices_for_every_input_class(tmp_path, monkeypatch):
    monkeypatch.setenv('PADDLE_DLA_HOME', str(tmp_path))
    record = {'engine': 'openvino', 'images_per_s': {'openvino': 2.0}}
    for key in ('model A | batch 1', 'model A | batch 8+', 'model B | batch 1'):
        runtimes.remember_choice(key, record)
    runtimes.remember_choice('model A | batch 2-7', dict(record, engine='onnxruntime'))
    runtimes.forget_engine('model A', 'openvino')
    assert sorted(runtimes.read_choices()) == ['model A | batch 2-7', 'model B | batch 1']


def test_a_read_only_cache_remembers_nothing_and_raises_nothing(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip('root writes into read-only folders')
    monkeypatch.setenv('PADDLE_DLA_HOME', str(tmp_path / 'home'))
    (tmp_path / 'home').mkdir()
    os.chmod(tmp_path / 'home', 0o500)
    try:
        runtimes.remember_choice('key', {'engine': 'paddle'})
        assert runtimes.read_choices() == {}
    finally:
        os.chmod(tmp_path / 'home', 0o700)


@pytest.mark.skipif(shutil.which('taskset') is None or not hasattr(os, 'sched_getaffinity'),
                    reason='needs taskset')
def test_engines_default_to_the_cpus_this_process_may_use():
    out = subprocess.run(['taskset', '-c', '0', sys.executable, '-c',
                          'from paddle_dla.inference.runtimes import cpu_threads; '
                          'print(cpu_threads(None), cpu_threads(3))'],
                         capture_output=True, text=True, env=child_env(), check=True)
    assert out.stdout.split() == ['1', '3']
    assert usable_cpus() == len(os.sched_getaffinity(0))
