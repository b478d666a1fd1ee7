"""The benchmark scripts run and print what they promise. They measure on the Paddle they are
given; what they call (export, Predictor, the evaluation harness) is held to Paddle 2.6 by
the tests of those, so these run on the current Paddle only (not marked paddle_compat)."""
import json
import re

import pytest

from helpers import FLOAT32_LIMIT, run_cli


@pytest.mark.full
@pytest.mark.torch
def test_benchmark_quick_mode(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_cli('tools/throughput.py', '--quick', '--json', out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    required = {'paddle eager', 'paddle fp32', 'openvino fp32', 'onnxruntime fp32',
                'torch eager', 'openvino int8', 'nncf int8'}
    assert required <= {r['engine'] for r in report['results']}
    for row in report['results']:
        if row['engine'] in required:  # these run on every CPU: an error is a failure
            assert row['error'] is None and row['img_per_s'] > 0, row
        else:  # others (bf16, channels-last) may be unsupported here, and say so
            assert row['error'] or row['img_per_s'] > 0, row
        if row['precision'] == 'int8':  # ours beside NNCF's defaults, calibrated alike
            assert row['error'] is None and row['vs_best_fp32'] > 0, row
        if row['engine'] in required and row['precision'] != 'int8':
            assert row['rel_logit_error'] <= FLOAT32_LIMIT and row['gflops'] > 0, row
            assert 0 < row['of_gemm_peak'] < 2, row  # a fraction of a peak measured in the run
    assert '| dla_46_c | 1 | paddle fp32 |' in proc.stdout
    env = report['environment']
    assert env['threads'] >= 1 and env['cpu'] and env['gemm_peak_gflops']['fp32'] > 0


@pytest.mark.full
def test_eval_end_to_end_benchmark_prints_its_ratios():
    proc = run_cli('tools/eval_end_to_end.py', '--images', 24, '--eager-images', 8,
                   '--rounds', 1, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert 'dla_34, batch 64, 24 JPEGs; eval ran: ' in lines[0]
    rates = {}
    for line in lines[1:4]:
        label, value = line.split(' img/s')[0].rsplit(None, 1)
        rates[label.strip()] = float(value)
    assert set(rates) == {'eval (defaults)', 'model only', 'eval --engine eager'}
    assert all(rate > 0 for rate in rates.values())
    assert 'end to end / model only: ' in proc.stdout and 'defaults / eager: ' in proc.stdout


@pytest.mark.full
def test_tracking_speed_measures_the_tracker_and_every_installed_engine():
    from paddle_dla.inference.runtimes import installed_engines
    proc = run_cli('tools/tracking_speed.py', '--frames', 2, '--rounds', 1, timeout=900)
    assert proc.returncode == 0, proc.stderr
    for people in (10, 100):
        assert re.search(rf'^tracker alone, {people} people: [0-9.]+ ms a frame', proc.stdout,
                         re.MULTILINE), proc.stdout
    measured = dict(re.findall(r'^paddle-dla track --engine (\w+): ([0-9.]+) frames/s end to '
                               r'end', proc.stdout, re.MULTILINE))
    assert set(measured) == set(installed_engines('cpu', 'fp32')), proc.stdout
    assert all(float(rate) > 0 for rate in measured.values())


def test_every_engine_of_a_dense_network_answers_every_head_alike():
    """The benchmark compares a dense network's engines on one array per batch: every head,
    flattened in the order of the names, whether the engine answers a dict (an export's
    Predictor), a bare array or a sequence (the model's own forward, DLA-Up's log-probs
    and logits)."""
    import numpy as np

    from paddle_dla.benchmarking.worker import _every_output
    batch = np.zeros((2, 3, 8, 8), np.float32)
    logprobs, logits = np.random.rand(2, 19, 8, 8), np.random.rand(2, 19, 2, 2)
    named = _every_output(lambda b: {'logprobs': logprobs, 'logits': logits})(batch)
    assert named.shape == (2, 19 * 64 + 19 * 4)
    as_sequence = _every_output(lambda b: [logprobs, logits], ['logprobs', 'logits'])(batch)
    assert np.array_equal(as_sequence, named)
    bare = _every_output(lambda b: logprobs, ['logprobs'])(batch)
    assert np.array_equal(bare, _every_output(lambda b: {'logprobs': logprobs})(batch))
    assert bare.shape == (2, 19 * 64)
