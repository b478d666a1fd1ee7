"""tools/imagenet_val.py on hostile or broken input: one line naming the file, a non-zero
exit, no results file, nothing executed, memory bounded (see hostile.py)."""
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import types
import zlib

import numpy as np
import pytest
import skimage
from PIL import Image

import paddle_dla
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.cli import common
from paddle_dla.cli import evaluate as cli
from paddle_dla.evaluation.dataset import DatasetError, find_samples
from paddle_dla.evaluation.transforms import MAX_IMAGE_PIXELS, ImageReadError, Preprocess
from paddle_dla.models.imagenet import synsets
from helpers import child_env
from hostile import REPO, assert_refused, hostile_pdparams, run_script

VARIANT = 'dla_46_c'
SCRIPT = 'tools/imagenet_val.py'
PHOTOS = ('chelsea.png', 'coffee.png', 'astronaut.png')


def _png(path, width, height):
    """A tiny valid PNG whose header is patched to declare ``width`` x ``height`` (CRC
    recomputed), so only a reader that trusts the header allocates for it."""
    path = pathlib.Path(path)
    Image.new('L', (8, 8)).save(path, format='PNG')
    data = bytearray(path.read_bytes())
    assert data[12:16] == b'IHDR'
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return str(path)


def _tall_png(path):
    """1 x 60000 pixels in about 300 bytes: within Pillow's pixel limit, but the short-side
    resize to 256 asks for 256 x 15,360,000 pixels (about 12 GB)."""
    Image.new('L', (1, 60000)).save(path, format='PNG')
    assert os.path.getsize(path) < 1000
    return str(path)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """Random dla_46_c weights (nothing downloaded) and a few small real photographs in
    synset folders and, again, in a flat folder."""
    root = tmp_path_factory.mktemp('hostile_eval')
    weights = str(root / 'weights.pdparams')
    save_pdparams(paddle_dla.create_model(VARIANT).state_dict(), weights)
    synset_root, flat = root / 'synsets', root / 'flat'
    flat.mkdir()
    names, labels = [], []
    for i, photo in enumerate(PHOTOS):
        image = Image.open(os.path.join(skimage.data_dir, photo)).convert('RGB').resize((80, 60))
        name = f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        folder = synset_root / synsets()[i]
        folder.mkdir(parents=True)
        image.save(folder / name, format='JPEG')
        image.save(flat / name, format='JPEG')
        names.append(name)
        labels.append(i)
    return dict(root=root, weights=weights, synsets=str(synset_root), flat=str(flat),
                names=names, labels=labels)


def _evaluate(env, *args, **kwargs):
    return run_script(SCRIPT, '--model', VARIANT, '--weights', env['weights'], '--no-progress',
                      '--batch-size', '2', *args, **kwargs)


def _with_image(env, tmp_path, make):
    """A copy of the synset folders plus one image made by ``make(path)``."""
    folder = tmp_path / 'synsets'
    shutil.copytree(env['synsets'], folder)
    return str(folder), make(folder / synsets()[0] / 'ILSVRC2012_val_00099999.png')


# Oversized images -----------------------------------------------------------------------

def test_tall_png_stops_the_run_naming_the_file(env, tmp_path):
    folder, tall = _with_image(env, tmp_path, _tall_png)
    results = tmp_path / 'results.json'
    proc = _evaluate(env, '--data-dir', folder, '--workers', '1', '--results-file', results)
    line = assert_refused(proc, tall, 'cannot resize', 'pass --skip-bad', absent=[results])
    assert '256x15360000' in line and 'MemoryError' not in proc.stderr


@pytest.mark.full
def test_tall_png_is_counted_as_bad_with_skip_bad(env, tmp_path):
    folder, tall = _with_image(env, tmp_path, _tall_png)
    results = tmp_path / 'results.json'
    proc = _evaluate(env, '--data-dir', folder, '--workers', '0', '--skip-bad',
                     '--results-file', results)
    assert proc.returncode == 0, proc.stderr
    assert 'unreadable images skipped (1):' in proc.stdout and proc.stdout.count(tall) == 1
    (row,) = json.loads(results.read_text())
    assert row['num_images'] == len(PHOTOS)
    assert row['verdict'].startswith('no verdict')  # random weights: no verdict anyway


@pytest.mark.full
def test_huge_declared_png_is_refused_naming_the_file(env, tmp_path):
    folder, huge = _with_image(env, tmp_path, lambda p: _png(p, 100000, 100000))
    results = tmp_path / 'results.csv'
    proc = _evaluate(env, '--data-dir', folder, '--workers', '0', '--results-file', results)
    assert_refused(proc, huge, 'cannot decode', absent=[results])


@pytest.mark.parametrize('size', [(9000, 9000), (100000, 100000), (0x7fffffff, 1)])
def test_declared_size_is_checked_before_decoding(tmp_path, size):
    path = _png(tmp_path / 'big.png', *size)
    assert size[0] * size[1] > MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError, match='cannot decode') as caught:
        Preprocess()(path)
    assert path in str(caught.value)
    if size == (9000, 9000):  # under Pillow's own limit: only our header check stops it
        assert 'declares 9000x9000 pixels' in str(caught.value)


def _fake_cv2(monkeypatch, decoded):
    """An OpenCV stand-in: ``imread`` returns ``decoded`` (or fails the test when None),
    ``resize`` fails the test: both must be reached only for images within bounds."""
    def imread(path, flags):
        assert decoded is not None, 'imread reached for an image refused by its header'
        return decoded

    def resize(*args, **kwargs):
        raise AssertionError('resize reached for an oversized target')
    fake = types.SimpleNamespace(imread=imread, resize=resize, error=RuntimeError,
                                 IMREAD_COLOR=1, INTER_LINEAR=1, INTER_CUBIC=2,
                                 INTER_NEAREST=0, INTER_LANCZOS4=4, INTER_AREA=3)
    monkeypatch.setitem(sys.modules, 'cv2', fake)


def test_cv2_backend_checks_the_header_before_decoding(tmp_path, monkeypatch):
    _fake_cv2(monkeypatch, decoded=None)
    path = _png(tmp_path / 'big.png', 9000, 9000)
    with pytest.raises(ImageReadError, match='declares 9000x9000 pixels'):
        Preprocess(backend='cv2')(path)


def test_cv2_backend_checks_the_resize_target(tmp_path, monkeypatch):
    _fake_cv2(monkeypatch, decoded=np.zeros((60000, 1, 3), np.uint8))
    path = _tall_png(tmp_path / 'tall.png')
    with pytest.raises(ImageReadError, match='cannot resize .*256x15360000'):
        Preprocess(backend='cv2')(path)


def test_resize_options_no_image_could_take_are_a_usage_error():
    with pytest.raises(cli.UsageError, match='--img-size 4096 with --crop-pct 0.1'):
        cli._check_resize(Preprocess(img_size=4096, crop_pct=0.1))
    cli._check_resize(Preprocess(img_size=4096, crop_pct=0.875))


# Label files ----------------------------------------------------------------------------

def _label_file(env, tmp_path, layout, extra_label):
    """A label file listing the flat images, then the first one again with ``extra_label``."""
    name, label = env['names'][0], env['labels'][0]
    entries = list(zip(env['names'], env['labels'])) + [(name, extra_label)]
    if layout == 'list file':
        path = tmp_path / 'val.txt'
        path.write_text(''.join(f'{n} {l}\n' for n, l in entries))
        return path, len(entries)
    path = tmp_path / 'LOC_val_solution.csv'
    path.write_text('ImageId,PredictionString\n' + ''.join(
        f'{n[:-5]},{synsets()[l]} 1 2 30 40\n' for n, l in entries))
    return path, len(entries) + 1


@pytest.mark.parametrize('layout', ['list file',
                                    pytest.param('Kaggle CSV', marks=pytest.mark.full)])
@pytest.mark.parametrize('case', [pytest.param('duplicate', marks=pytest.mark.full), 'conflicting'])
def test_image_listed_twice_is_refused_with_file_and_line(env, tmp_path, layout, case):
    extra = env['labels'][0] if case == 'duplicate' else env['labels'][0] + 7
    labels, line = _label_file(env, tmp_path, layout, extra)
    results = tmp_path / 'results.json'
    proc = _evaluate(env, '--data-dir', env['flat'], '--label-file', labels,
                     '--results-file', results)
    message = assert_refused(proc, f'{labels}:{line}:', env['names'][0], absent=[results])
    assert ('listed twice' if case == 'duplicate' else f'has label {extra} here') in message


@pytest.mark.full
def test_label_file_not_utf8_is_refused_with_its_offset(env, tmp_path):
    labels = tmp_path / 'val.txt'
    first = f'{env["names"][0]} 0\n'
    labels.write_bytes(first.encode() + 'caf\u00e9.JPEG 1\n'.encode('latin-1'))
    proc = _evaluate(env, '--data-dir', env['flat'], '--label-file', labels)
    assert_refused(proc, f'{labels}:2: not UTF-8', f'byte 0xe9 at offset {len(first) + 3}')


def test_label_file_that_is_a_folder_is_named(env, tmp_path):
    with pytest.raises(DatasetError, match='is a folder, not a label file') as caught:
        find_samples(env['flat'], tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_unreadable_data_folder_is_named(env, monkeypatch):
    real = os.listdir

    def listdir(path):
        if os.fspath(path) == env['flat']:
            raise PermissionError(13, 'Permission denied', path)
        return real(path)
    monkeypatch.setattr(os, 'listdir', listdir)
    with pytest.raises(DatasetError, match=re.escape(f'cannot read folder {env["flat"]}: Perm')):
        find_samples(env['flat'])


def test_pipe_named_like_an_image_is_not_listed(env, tmp_path):
    folder = tmp_path / 'synsets'
    shutil.copytree(env['synsets'], folder)
    os.mkfifo(folder / synsets()[0] / 'ILSVRC2012_val_00099999.JPEG')
    samples, _ = find_samples(folder)
    assert len(samples) == len(PHOTOS)


# Weights --------------------------------------------------------------------------------

@pytest.mark.full
def test_hostile_pdparams_is_refused_and_runs_nothing(env, tmp_path):
    marker = tmp_path / 'pwned'
    evil = hostile_pdparams(tmp_path / 'evil.pdparams', marker)
    results = tmp_path / 'results.json'
    proc = run_script(SCRIPT, '--model', VARIANT, '--weights', evil, '--data-dir',
                      env['synsets'], '--workers', '0', '--results-file', results)
    assert_refused(proc, evil, absent=[marker, results])


# Options --------------------------------------------------------------------------------

BAD_OPTIONS = [('--img-size', '0'), ('--img-size', '-5'), ('--img-size', '8'),
               ('--img-size', '5000'), ('--batch-size', '0'), ('--crop-pct', '0'),
               ('--crop-pct', '1.5'), ('--crop-pct', 'nan'), ('--workers', '-1'),
               ('--limit', '0'), ('--tolerance', '-0.1'), ('--tag', 'nope'),
               ('--results-file', '/no/such/folder/r.json')]


@pytest.mark.parametrize('option,value', BAD_OPTIONS)
def test_bad_option_is_one_line_at_parse_time(option, value, capsys):
    with pytest.raises(SystemExit) as exited:
        common.parser_for(cli, 'imagenet_val').parse_args(
            ['--model', VARIANT, '--data-dir', '.', option, value])
    assert exited.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('imagenet_val: error: argument '
                                                   f'{option}:'), lines


@pytest.mark.full
def test_bad_option_from_the_script(env):
    proc = run_script(SCRIPT, '--model', VARIANT, '--data-dir', env['synsets'],
                      '--img-size', '8')
    assert proc.returncode == 2
    assert_refused(proc, 'argument --img-size: 8 is out of range')


def test_good_options_still_parse():
    args = common.parser_for(cli, 'imagenet_val').parse_args(
        ['--model', VARIANT, '--data-dir', '.', '--img-size', '32', '--crop-pct', '1',
         '--workers', '0', '--batch-size', '1', '--limit', '1', '--tolerance', '0'])
    assert (args.img_size, args.crop_pct, args.workers, args.tolerance) == (32, 1.0, 0, 0.0)


# Signals --------------------------------------------------------------------------------

def _leftovers(*folders):
    """Temporary files and folders (``.name.random.tmp``) under ``folders``."""
    return [os.path.join(root, name) for folder in folders for root, dirs, files in os.walk(folder)
            for name in dirs + files if name.startswith('.') and name.endswith('.tmp')]


def _exported(home):
    return glob.glob(os.path.join(home, 'compiled', 'exports', '*', 'model.pdiparams'))


def _many_images(env, tmp_path):
    """A synset folder of 3000 links to one photograph: a run that lasts (at batch 1)."""
    photo = os.path.join(env['synsets'], synsets()[0], env['names'][0])
    folder = tmp_path / 'many' / synsets()[0]
    folder.mkdir(parents=True)
    for i in range(3000):
        os.link(photo, folder / f'ILSVRC2012_val_{i:08d}.JPEG')
    return folder


@pytest.mark.full
def test_sigterm_mid_run_leaves_nothing_partial(env, tmp_path):
    """SIGTERM mid-run unwinds like Ctrl-C: nothing temporary is left (in the temporary
    folder or the cache of compiled models), workers exit quietly, and the user sees one
    line."""
    folder = _many_images(env, tmp_path)
    scratch, home = tmp_path / 'tmp', tmp_path / 'home'
    scratch.mkdir()
    argv = [sys.executable, os.path.join(REPO, SCRIPT), '--model', VARIANT, '--weights',
            env['weights'], '--data-dir', str(folder.parent), '--batch-size', '1',
            '--workers', '1', '--no-progress']
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=child_env(TMPDIR=str(scratch),
                                                    PADDLE_DLA_HOME=str(home)))
    try:
        deadline = time.monotonic() + 120
        while not _exported(home) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _exported(home), 'the run never exported its model'
        time.sleep(5)  # past the engine choice, into the evaluation loop, workers running
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert _leftovers(scratch, home) == [], err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ['imagenet_val: error: terminated by signal 15'], err


def _decode_or_die(path):
    """A decoder that dies as an out-of-memory kill would take it, at one file."""
    if path.endswith('die.png'):
        os.kill(os.getpid(), signal.SIGKILL)
    return np.zeros((3, 4, 4), np.float32)


def test_a_decoding_worker_that_dies_stops_the_run_in_one_line():
    """A killed worker's batch never arrives (the pool replaces the worker but not its
    task): the wait notices the death and raises at once, naming the batch, instead of
    waiting forever."""
    from paddle_dla.evaluation.runner import DecoderDied, decoded_batches
    samples = [(f'/images/{i}.png', 0) for i in range(6)] + [('/images/die.png', 0)]
    started = time.monotonic()
    batches = decoded_batches(samples, _decode_or_die, 2, 1, skip_bad=False)
    with pytest.raises(DecoderDied, match='killed by SIGKILL') as caught:
        list(batches)
    assert time.monotonic() - started < 30
    assert "/images/die.png" in str(caught.value) and '--workers 0' in str(caught.value)


def _forked_children(pid):
    """The processes ``pid``'s main thread forked (its command line): the decoding workers,
    not the engines' measuring processes."""
    def cmdline(process):
        with open(f'/proc/{process}/cmdline', 'rb') as text:
            return text.read()
    with open(f'/proc/{pid}/task/{pid}/children') as listing:
        children = [int(child) for child in listing.read().split()]
    try:
        return [child for child in children if cmdline(child) == cmdline(pid)]
    except FileNotFoundError:  # one ended while being looked at
        return []


@pytest.mark.full
@pytest.mark.skipif(not os.path.exists('/proc/self/task'), reason='reads /proc (Linux)')
def test_decoding_workers_killed_mid_run_end_it_in_one_line(env, tmp_path):
    """The out-of-memory killer takes the decoding workers in the middle of a run (at any
    moment: while decoding, waiting, or sending a batch): the command ends with one line
    that says what to do, a non-zero exit, and no results file."""
    folder = _many_images(env, tmp_path)
    home, results = tmp_path / 'home', tmp_path / 'results.json'
    argv = [sys.executable, os.path.join(REPO, SCRIPT), '--model', VARIANT, '--weights',
            env['weights'], '--data-dir', str(folder.parent), '--batch-size', '1',
            '--workers', '2', '--no-progress', '--results-file', str(results)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=child_env(PADDLE_DLA_HOME=str(home)))
    try:
        deadline = time.monotonic() + 120
        while not _exported(home) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _exported(home), 'the run never exported its model'
        while (not _forked_children(proc.pid) and time.monotonic() < deadline
               and proc.poll() is None):
            time.sleep(0.05)  # the workers start with the evaluation loop
        time.sleep(1)
        workers = _forked_children(proc.pid)
        assert workers, 'no decoding worker found'
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, None), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and 'a decoding worker died (' in lines[0], err
    assert '--workers 0' in lines[0] and not results.exists()
