"""tools/imagenet_val.py on a small real-photograph set whose expected scores are known."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.weights.convert import convert_state_dict
from paddle_dla.inference.engines import ENGINES
from paddle_dla.evaluation.report import NOT_PUBLISHED, RESULT_FIELDS, verdict
from paddle_dla.evaluation.transforms import Preprocess
from helpers import REPO, child_env, run_cli, stderr_lines

pytestmark = pytest.mark.paddle_compat

VARIANT = 'dla_46_c'
# The tests below run on a set labelled by the timm oracle (valset.py): they need torch.
oracle_data = pytest.mark.torch


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    import valset
    from oracle import oracle_state_dict
    root = tmp_path_factory.mktemp('imagenet')
    info = valset.build(str(root), VARIANT)
    info['weights'] = str(root / 'weights.pdparams')
    save_pdparams(convert_state_dict(oracle_state_dict(VARIANT), VARIANT), info['weights'])
    assert 0 < info['top1'] < info['top5'] < len(info['paths'])  # hits and misses both
    return info


def _evaluate(data, tmp_path, *extra, script=None):
    results = tmp_path / 'results.json'
    command = script or [sys.executable, os.path.join(REPO, 'tools/imagenet_val.py')]
    proc = subprocess.run(command + ['--model', VARIANT, '--weights', data['weights'],
                                     '--batch-size', '4', '--workers', '2', '--results-file',
                                     str(results), *map(str, extra)],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(results.read_text())
    return proc, row


def _expected_percent(count, data):
    return round(100.0 * count / len(data['paths']), 3)


@oracle_data
def test_preprocessing_equals_torchvision(data):
    import valset
    reference, ours = valset.reference_transform(), Preprocess()
    for path in data['paths']:
        expected = reference(Image.open(path).convert('RGB')).numpy()
        assert np.abs(ours(path) - expected).max() <= 1e-6, path


@oracle_data
@pytest.mark.parametrize('layout', ['list file', pytest.param('Kaggle CSV', marks=pytest.mark.full),
                                    pytest.param('synset folders', marks=pytest.mark.full)])
def test_each_layout_reproduces_the_expected_scores(data, tmp_path, layout):
    args = {'list file': ['--data-dir', data['flat'], '--label-file', data['list_file']],
            'Kaggle CSV': ['--data-dir', data['flat'], '--label-file', data['kaggle']],
            'synset folders': ['--data-dir', data['synsets']]}[layout]
    proc, row = _evaluate(data, tmp_path, *args)
    assert row['num_images'] == len(data['paths'])
    assert row['top1'] == _expected_percent(data['top1'], data)
    assert row['top5'] == _expected_percent(data['top5'], data)
    # the oracle's weights, not the published ones: no published numbers, delta or verdict
    assert row['verdict'] == NOT_PUBLISHED
    assert (row['published_top1'], row['published_top5'], row['delta_top1']) == (None, None, None)
    # the deployed path by default, its engine chosen by measurement; the split reported
    assert set(row) == set(RESULT_FIELDS) and row['tag'] == 'custom'
    assert row['engine'].endswith(' (auto)') and row['engine'].split()[0] in ENGINES
    assert (row['model_threads'], row['decode_workers']) == (os.cpu_count(), 2)
    assert 0 < row['images_per_sec'] <= row['model_images_per_sec']
    assert (f'{VARIANT} (custom weights, {row["engine"]} fp32: {os.cpu_count()} model threads, 2 '
            f'decoding workers, {len(data["paths"])} images, {layout}') in proc.stdout
    assert 'published by:' not in proc.stdout


@pytest.mark.full
@oracle_data
def test_label_file_found_next_to_the_images(data, tmp_path):
    """The list file sits in the parent of the flat folder and is found without --label-file."""
    _, row = _evaluate(data, tmp_path, '--data-dir', data['flat'], '--no-progress')
    assert row['top5'] == _expected_percent(data['top5'], data)


@pytest.mark.full
@oracle_data
def test_two_cpu_processes_count_every_image_once(data, tmp_path):
    launch = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
              '--log_dir', str(tmp_path / 'logs'), os.path.join(REPO, 'tools/imagenet_val.py')]
    _, row = _evaluate(data, tmp_path, '--data-dir', data['synsets'], '--no-progress',
                       script=launch)
    assert len(data['paths']) % 2 == 1  # uneven shards: no padding may creep in
    assert row['num_images'] == len(data['paths'])
    assert row['top1'] == _expected_percent(data['top1'], data)
    assert row['top5'] == _expected_percent(data['top5'], data)


# What Paddle or its launcher may print that a user should never see from a run that worked.
NOISE = ('Traceback', 'Termination signal', 'LAUNCH INFO', 'Modified FLAGS', 'I1', 'W1')


@pytest.mark.full
@oracle_data
def test_nproc_runs_cleanly_every_time(data, tmp_path):
    """``paddle-dla eval --nproc 2`` several times in a row: every rank exits cleanly (no
    C++ termination dump, no traceback), the launcher stays quiet, every image counts once."""
    command = [sys.executable, '-m', 'paddle_dla', 'eval', '--nproc', '2']
    for attempt in range(4):
        proc, row = _evaluate(data, tmp_path, '--data-dir', data['synsets'], '--no-progress',
                              script=command)
        assert not [n for n in NOISE if n in proc.stderr], (attempt, proc.stderr)
        assert row['num_images'] == len(data['paths']) and proc.stdout.count('top-1') >= 1
        assert row['top1'] == _expected_percent(data['top1'], data)
    assert not (tmp_path / 'log').exists() and not os.path.exists(os.path.join(REPO, 'log'))


@pytest.mark.full
@oracle_data
def test_sigterm_mid_run_one_line_and_nothing_left(data, tmp_path):
    """Paddle's import installs glog's crash handler for SIGTERM over ours: without taking it
    back, SIGTERM prints a C++ "Termination signal" dump (on stdout) and kills the run
    without removing its temporary folder."""
    proc = subprocess.Popen(
        [sys.executable, '-m', 'paddle_dla', 'eval', '--model', VARIANT,
         '--weights', data['weights'], '--data-dir', data['synsets'], '--batch-size', '1',
         '--workers', '1'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env=child_env(TMPDIR=str(tmp_path)))
    seen = ''
    while 'img' not in seen:  # the progress bar is up: the model is running
        char = proc.stderr.read(1)
        assert char, seen
        seen += char
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    lines = [l for l in (seen + err).replace('\r', '\n').splitlines()
             if l.strip() and 'img' not in l]
    assert proc.returncode == 143, out + err
    assert lines == ['paddle-dla eval: error: terminated by signal 15'], out + err
    # ...on a line of its own, not after the progress bar's open line
    assert 'paddle-dla eval: error: terminated by signal 15' in (seen + err).split('\n'), err
    assert 'Termination signal' not in out
    assert not list(tmp_path.glob('paddle_dla_eval_*'))


@pytest.mark.full
@oracle_data
def test_compare_torch_agrees_fully(data, tmp_path):
    proc, _ = _evaluate(data, tmp_path, '--data-dir', data['synsets'], '--compare-torch')
    n = len(data['paths'])
    assert f'compare-torch: top-1 agreement 100.00% ({n}/{n})' in proc.stdout
    assert 'top1=' in proc.stderr and 'img' in proc.stderr  # the progress bar


@pytest.mark.full
@oracle_data
def test_csv_results_in_timm_schema(data, tmp_path):
    out = tmp_path / 'r.csv'
    proc = run_cli('tools/imagenet_val.py', '--model', VARIANT, '--weights', data['weights'],
                   '--data-dir', data['synsets'], '--results-file', out, '--workers', '0')
    assert proc.returncode == 0, proc.stderr
    header = out.read_text().splitlines()[0].split(',')
    assert header == list(RESULT_FIELDS)


def _fails_with(proc, *phrases):
    assert proc.returncode != 0
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith('imagenet_val: error:'), proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def _run(data, *args):
    return run_cli('tools/imagenet_val.py', '--model', VARIANT, '--weights', data['weights'],
                   '--no-progress', *args)


@pytest.mark.full
@oracle_data
def test_listed_file_missing(data, tmp_path):
    labels = tmp_path / 'val.txt'
    labels.write_text(open(data['list_file']).read() + 'ILSVRC2012_val_00049999.JPEG 3\n')
    _fails_with(_run(data, '--data-dir', data['flat'], '--label-file', labels),
                'lists ILSVRC2012_val_00049999.JPEG, which is not in')


@pytest.mark.full
@oracle_data
def test_label_out_of_range(data, tmp_path):
    labels = tmp_path / 'val.txt'
    labels.write_text(f'{os.path.basename(data["paths"][0])} 1000\n')
    _fails_with(_run(data, '--data-dir', data['flat'], '--label-file', labels),
                'val.txt:1: label 1000 is outside 0..999')


@pytest.mark.full
@oracle_data
def test_empty_folder(data, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    _fails_with(_run(data, '--data-dir', empty), 'holds no images')


@pytest.mark.full
@oracle_data
def test_devkit_ground_truth_is_explained(data, tmp_path):
    devkit = tmp_path / 'ILSVRC2012_validation_ground_truth.txt'
    devkit.write_text('490\n361\n171\n')
    _fails_with(_run(data, '--data-dir', data['flat'], '--label-file', devkit),
                '1-based ILSVRC2012_ID', 'sorted-synset')


@pytest.mark.full
@oracle_data
def test_unreadable_image_stops_the_run_or_is_skipped(data, tmp_path):
    folder = tmp_path / 'synsets'
    import shutil
    shutil.copytree(data['synsets'], folder)
    broken = next(folder.iterdir()) / 'ILSVRC2012_val_00099999.JPEG'
    broken.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    _fails_with(_run(data, '--data-dir', folder, '--workers', '2'), 'cannot decode',
                'ILSVRC2012_val_00099999.JPEG', 'pass --skip-bad')
    proc = _run(data, '--data-dir', folder, '--skip-bad', '--workers', '2')
    assert proc.returncode == 0, proc.stderr
    assert f'verdict: {NOT_PUBLISHED}' in proc.stdout  # own weights: no verdict anyway
    assert 'unreadable images skipped (1):' in proc.stdout
    assert proc.stdout.count(str(broken)) == 1  # the reason names the file, once
    assert f'{len(data["paths"])} images' in proc.stdout


@pytest.mark.full
@oracle_data
def test_unknown_model(data):
    proc = run_cli('tools/imagenet_val.py', '--model', 'dla_7', '--data-dir', data['synsets'])
    _fails_with(proc, "unknown DLA variant 'dla_7'")


@pytest.mark.full
@oracle_data
def test_cv2_backend_without_opencv_says_how_to_install_it(data):
    try:
        import cv2  # noqa: F401
        pytest.skip('OpenCV is installed here')
    except ImportError:
        pass
    _fails_with(_run(data, '--data-dir', data['synsets'], '--backend', 'cv2'),
                'pip install opencv-python-headless')


def test_verdict_rules():
    assert verdict(50000, 77.0, 93.3, 77.036, 93.316, 0.1) == 'PASS'
    assert verdict(50000, 76.9, 93.3, 77.036, 93.316, 0.1) == 'FAIL'
    assert verdict(50000, 77.0, 93.1, 77.036, 93.316, 0.1) == 'FAIL'
    assert verdict(49999, 77.0, 93.3, 77.036, 93.316, 0.1) == 'no verdict: 49,999 of 50,000 images'
    assert verdict(50000, 77.0, 93.3, None, None, 0.1).startswith('no verdict: no published')
    assert verdict(50000, 77.0, 93.3, 77.036, 93.316, 0.1, bad_images=2).startswith('no verdict')
