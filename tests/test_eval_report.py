"""What ``paddle-dla eval`` reports: the published comparison for the registry's weights
only, decoding advice that holds on this machine's core count, and the label file read.

Random dla_46_c weights and a few small real photographs (nothing downloaded, no torch).
The registry's "published" weights are a second random file put in the cache slot of
dla_46_c official, as ``pretrained=True`` would have left them. The core count a run sees
is pinned by replacing ``os.cpu_count`` in the child, so the advice tests mean the same on
any machine."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import skimage
from PIL import Image

import paddle_dla
from paddle_dla.weights.cache import cached_weights_path
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.evaluation.dataset import LabelSource
from paddle_dla.evaluation.report import NOT_PUBLISHED, format_table, result_row
from paddle_dla.evaluation.runner import Tally
from paddle_dla.evaluation.transforms import Preprocess
from paddle_dla.models.imagenet import CLASSES_FILE, synsets
from paddle_dla.weights.registry import get_weights
from helpers import REPO, child_env
from torch_files import official_layout, save_state_dict

pytestmark = pytest.mark.paddle_compat

VARIANT = 'dla_46_c'
PHOTOS = ('chelsea.png', 'coffee.png', 'astronaut.png')
# dla_46_c's published numbers (timm's table), which only its published weights are held to.
PUBLISHED = (64.88, 86.33)
# A run with os.cpu_count() pinned, as the command runs on a machine of that many cores.
PINNED_CORES = ('import os, sys\nos.cpu_count = lambda: {cores}\n'
                'from paddle_dla.cli import main\nsys.exit(main(sys.argv[1:]))')


def _photo(name, size):
    return Image.open(os.path.join(skimage.data_dir, name)).convert('RGB').resize(size)


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """Two different random weight files (one of them the cached "published" weights), a
    .pth in PyTorch's format, three photographs as synset folders and as a flat folder whose
    list file sits in the parent, and four large JPEGs whose decoding outlasts the model."""
    root = tmp_path_factory.mktemp('eval_report')
    home = root / 'home'
    mine = str(root / 'mine.pdparams')
    save_pdparams(paddle_dla.create_model(VARIANT).state_dict(), mine)
    published = str(home / os.path.basename(cached_weights_path(VARIANT, 'official')))
    home.mkdir()
    save_pdparams(paddle_dla.create_model(VARIANT).state_dict(), published)
    assert open(mine, 'rb').read() != open(published, 'rb').read()
    pth = str(root / 'mine.pth')
    save_state_dict(official_layout(VARIANT), pth)

    flat, by_synset, big = root / 'flat', root / 'synsets', root / 'big' / synsets()[0]
    flat.mkdir()
    big.mkdir(parents=True)
    names = []
    for i, photo in enumerate(PHOTOS):
        names.append(f'ILSVRC2012_val_{i + 1:08d}.JPEG')
        (by_synset / synsets()[i]).mkdir(parents=True)
        for folder in (flat, by_synset / synsets()[i]):
            _photo(photo, (80, 60)).save(folder / names[-1], format='JPEG')
    (root / 'val_list.txt').write_text(''.join(f'{n} {i}\n' for i, n in enumerate(names)))
    for i in range(4):
        _photo(PHOTOS[0], (4000, 3000)).save(big / f'ILSVRC2012_val_{i + 1:08d}.JPEG',
                                             format='JPEG', quality=95)
    return dict(root=root, home=str(home), mine=mine, published=published, pth=pth,
                flat=str(flat), synsets=str(by_synset), big=str(big.parent), names=names)


def _eval(env, *args, cores=None, extra_env=None):
    """``paddle-dla eval`` of dla_46_c in a child, eagerly (no export to wait for)."""
    start = ([sys.executable, '-c', PINNED_CORES.format(cores=cores)] if cores else
             [sys.executable, '-m', 'paddle_dla'])
    command = start + ['eval', '--model', VARIANT, '--engine', 'eager', '--no-progress',
                       '--batch-size', '2', *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=child_env(PADDLE_DLA_HOME=env['home'], **(extra_env or {})))


def _results(proc, path):
    assert proc.returncode == 0, proc.stderr
    if str(path).endswith('.csv'):
        (row,) = csv.DictReader(open(path, encoding='utf-8'))
        return row
    (row,) = json.loads(open(path, encoding='utf-8').read())
    return row


# The published comparison -----------------------------------------------------------------

@pytest.mark.parametrize('kind,results', [
    ('pdparams', 'r.json'), pytest.param('pth', 'r.csv', marks=pytest.mark.full)])
def test_own_weights_get_their_numbers_without_the_published_comparison(env, tmp_path, kind,
                                                                        results):
    weights = env['mine'] if kind == 'pdparams' else env['pth']
    results = tmp_path / results
    proc = _eval(env, '--weights', weights, '--data-dir', env['synsets'], '--strict',
                 '--results-file', results)
    row = _results(proc, results)
    empty = None if kind == 'pdparams' else ''  # JSON null, an empty CSV cell
    assert [row[k] for k in ('published_top1', 'published_top5', 'delta_top1',
                             'delta_top5')] == [empty] * 4
    assert row['verdict'] == NOT_PUBLISHED and row['tag'] == 'custom'
    table = proc.stdout[proc.stdout.index(f'{VARIANT} (custom weights'):].splitlines()
    assert f'  weights: {weights}, not the registry\'s published weights' in table
    assert f'  top-1    {float(row["top1"]):>9.3f}' in table  # the number alone
    assert f'  verdict: {NOT_PUBLISHED}' in table
    assert not [l for l in table if 'delta' in l or 'published by' in l or '64.88' in l]


def test_a_full_set_of_own_weights_has_no_verdict_and_no_delta():
    """The reported case: top-1 0.000 of one's own weights on all 50,000 images was set
    against the published 74.632 as -74.632 and a FAIL; the published weights still are."""
    tally = Tally(images=50000, wall_s=1.0, compute_s=1.0)
    labels = LabelSource('synset folders', CLASSES_FILE, 'folder names')
    run = {'engine': 'eager', 'precision': 'fp32', 'model_threads': 2, 'decode_workers': 0,
           'setup_s': 0.0}
    official = get_weights('dla_34')

    def report(published):
        row = result_row('dla_34', tally, published, Preprocess(), 15_742_104, 0.1, run, labels)
        return row, format_table(row, tally, published, labels, 'w', 0.1, 15_742_104)
    row, table = report(None)
    assert (row['delta_top1'], row['published_top1'], row['verdict']) == (None, None, NOT_PUBLISHED)
    assert '74.632' not in table and 'FAIL' not in table
    row, table = report(official)
    assert (row['delta_top1'], row['verdict']) == (-74.632, 'FAIL')
    assert '74.632  -74.632' in table and 'verdict: FAIL (tolerance 0.1 points)' in table


def _override(env, tmp_path):
    """Register the .pth as a published file of dla_46_c official, by its sha256 prefix."""
    import hashlib
    sha = hashlib.sha256(open(env['pth'], 'rb').read()).hexdigest()[:8]
    path = tmp_path / 'override.json'
    path.write_text(json.dumps({f'{VARIANT}.official': {'sources': [
        {'url': f'https://example.org/dla46_c-{sha}.pth', 'sha256_prefix': sha}]}}))
    return {'PADDLE_DLA_WEIGHTS_OVERRIDE': str(path)}, f'dla46_c-{sha}.pth'


@pytest.mark.parametrize('how', [pytest.param(how, marks=pytest.mark.full) for how in (
    'registry', 'copy of the cached .pdparams', 'published .pth')])
def test_published_weights_keep_their_comparison(env, tmp_path, how):
    """The registry's weights, however they are given, are compared with the published
    numbers as before; the report says what was loaded."""
    args, extra, said = [], None, f'the published {VARIANT}.official weights'
    if how == 'copy of the cached .pdparams':
        copy = tmp_path / 'copy.pdparams'
        shutil.copy(env['published'], copy)
        args, said = ['--weights', copy], (f'{copy}: identical to the cached conversion of '
                                           f'the published {VARIANT}.official weights')
    elif how == 'published .pth':
        extra, filename = _override(env, tmp_path)
        args, said = ['--weights', env['pth']], (f'{env["pth"]}: the published {filename} of '
                                                 f'{VARIANT}.official (its sha256 prefix matches)')
    results = tmp_path / 'r.json'
    proc = _eval(env, *args, '--data-dir', env['synsets'], '--results-file', results,
                 extra_env=extra)
    row = _results(proc, results)
    assert (row['published_top1'], row['published_top5']) == PUBLISHED
    assert row['delta_top1'] == round(row['top1'] - PUBLISHED[0], 3)
    assert row['verdict'] == f'no verdict: {len(PHOTOS)} of 50,000 images'
    assert row['tag'] == 'official'
    assert f'{VARIANT} (official weights' in proc.stdout and f'  weights: {said}\n' in proc.stdout
    assert 'ours  published    delta' in proc.stdout
    assert f'  top-1    {row["top1"]:>9.3f} {PUBLISHED[0]:>10.3f}' in proc.stdout
    assert 'published by: timm results table' in proc.stdout


# Decoding advice --------------------------------------------------------------------------

@pytest.mark.parametrize('cores,workers,note', [
    (2, None, None),
    pytest.param(2, 2, 'note: below 4 cores decoding workers take CPU time from the model; '
                 '--workers 0', marks=pytest.mark.full),
    pytest.param(8, 1, 'note: data loading was the bottleneck; raise --workers (now 1, try 2)',
                 marks=pytest.mark.full)])
def test_decoding_advice_only_where_it_helps(env, cores, workers, note):
    """Large JPEGs keep the model waiting. Below four cores the main process decodes by
    default and more workers would slow the model: no "raise --workers" there."""
    args = ['--workers', workers] if workers is not None else []
    proc = _eval(env, '--weights', env['mine'], '--data-dir', env['big'], '--threads', '2',
                 *args, cores=cores)
    assert proc.returncode == 0, proc.stderr
    stats = next(l for l in proc.stdout.splitlines() if l.startswith('  parameters:'))
    waited = int(stats.split('% of the time')[0].rsplit(' ', 1)[1])
    assert waited > 20, stats  # the case the advice is about
    notes = [l.strip() for l in proc.stdout.splitlines() if l.strip().startswith('note:')]
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(note), notes
    if cores < 4:
        assert 'raise --workers' not in proc.stdout
    if workers is None:
        assert f'data: 4 images in {env["big"]}, decoding in the main process' in proc.stdout
        assert f'decoding {waited}% of the time' in stats


@pytest.mark.parametrize('cores,default', [(2, 0), (3, 0), (8, 2), (64, 8)])
def test_workers_help_and_default_follow_the_decoding_policy(env, cores, default):
    proc = subprocess.run([sys.executable, '-c', PINNED_CORES.format(cores=cores), 'eval',
                           '--help'], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=child_env(COLUMNS='2000'))
    assert proc.returncode == 0, proc.stderr
    (line,) = [l for l in proc.stdout.splitlines() if l.strip().startswith('--workers')]
    assert ('0: the main process decodes between batches (default: one per 4 cores, at most '
            f'8, so 0 below 4 cores, where workers would take CPU time from the model; here '
            f'{default})') in line


# The label file named -----------------------------------------------------------------------

def _label_lines(proc, data_dir):
    """The start-of-run summary's labels line and the report's, which must agree."""
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f'data: 3 images in {data_dir}, decoding in the main process', lines
    assert lines[1].startswith('labels: ') and lines[2].startswith(f'{VARIANT} (')
    (again,) = [l for l in lines[3:] if l.startswith('  labels: ')]
    assert again.strip() == lines[1]
    return lines[1]


def test_label_file_found_in_the_parent_is_named(env, tmp_path):
    results = tmp_path / 'r.json'
    proc = _eval(env, '--weights', env['mine'], '--data-dir', env['flat'], '--workers', '0',
                 '--results-file', results)
    listed = str(env['root'] / 'val_list.txt')
    assert _label_lines(proc, env['flat']) == (
        f'labels: {listed} (list file, found in the data folder\'s parent; --label-file to '
        f'choose another)')
    assert _results(proc, results)['label_file'] == listed


@pytest.mark.full  # the fast tier keeps one case of this item
def test_label_file_given_is_named(env, tmp_path):
    kaggle = tmp_path / 'LOC_val_solution.csv'
    kaggle.write_text('ImageId,PredictionString\n' + ''.join(
        f'{n[:-5]},{synsets()[i]} 1 2 30 40\n' for i, n in enumerate(env['names'])))
    proc = _eval(env, '--weights', env['mine'], '--data-dir', env['flat'], '--workers', '0',
                 '--label-file', kaggle)
    assert _label_lines(proc, env['flat']) == f'labels: {kaggle} (Kaggle CSV, as given)'


@pytest.mark.full  # the fast tier keeps one case of this item
def test_synset_folders_name_the_class_list(env):
    proc = _eval(env, '--weights', env['mine'], '--data-dir', env['synsets'], '--workers', '0')
    assert _label_lines(proc, env['synsets']) == (
        f'labels: {CLASSES_FILE} (synset folders, folder names indexed in this sorted synset '
        f'list)')


@pytest.mark.full  # the fast tier keeps one case of this item
def test_label_files_found_but_not_read_are_named(env, tmp_path):
    """The data folder's own list wins over the parent's CSV; both are named."""
    flat = tmp_path / 'flat'
    shutil.copytree(env['flat'], flat)
    shutil.copy(env['root'] / 'val_list.txt', flat / 'val.txt')
    (tmp_path / 'LOC_val_solution.csv').write_text('not read\n')
    proc = _eval(env, '--weights', env['mine'], '--data-dir', flat, '--workers', '0')
    assert _label_lines(proc, flat) == (
        f'labels: {flat / "val.txt"} (list file, found in the data folder); also found, not '
        f'read: {tmp_path / "LOC_val_solution.csv"}')


def test_the_coco_verdict_holds_only_at_the_published_input():
    """CenterNet's published AP is for its own checkpoint on all of COCO val2017 at 512x512:
    --keep-res or another --input-size gets no verdict, and says which."""
    from paddle_dla.evaluation.coco import verdict
    from paddle_dla.models.dense_variants import get_dense_config
    config = get_dense_config('centernet_dla34')
    published = config.published
    ap, images, weights = published.ap_for(False), published.images, 'ctdet_coco_dla_2x.pth'

    def said(*modes, ap=ap, images=images, weights=weights):
        return verdict(published, weights, images, ap, False, *modes)
    assert said(False, 0.5).startswith('PASS') and said(False, 0.5, False).startswith('PASS')
    assert said(False, 0.5, ap=ap - 1).startswith('FAIL')
    assert said(False, 0.5, weights='mine.pth').startswith('no verdict')
    assert said(False, 0.5, images=images - 1).startswith('no verdict')
    assert said(True, 0.5) == 'no verdict: the published numbers are at 512x512, not --keep-res'
    assert said(False, 0.5, config.input) == f'no verdict: the published {ap} AP is at 512x512 input'
