"""The deployment and fine-tuning entry points (``paddle-dla export/predict``,
``examples/finetune.py``) refuse hostile or broken input as a user sees it: one line on
stderr naming the file, a non-zero exit, nothing executed, no partial output."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from PIL import Image

import paddle_dla
from paddle_dla import cli
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.inference import ExportError, ModelFileError, Predictor, export, tensor_shapes
from helpers import child_env
from hostile import (REPO, assert_refused, hostile_pdparams, leftovers, run_module,
                     run_python, run_script, stderr_lines)

FINETUNE = 'examples/finetune.py'
# A command run with the file size limit of a nearly full disk: writes past it fail with
# EFBIG, as they would with ENOSPC.
FULL_DISK = '''
import resource, signal, sys
from paddle_dla.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(main(sys.argv[2:]))
'''


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """Random dla_46_c weights, an image, a tiny two-class data folder, an exported model."""
    root = tmp_path_factory.mktemp('deploy')
    paddle.seed(0)
    model = paddle_dla.dla_46_c()
    save_pdparams(model.state_dict(), root / 'dla_46_c.pdparams')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / 'cat.png')
    for label in ('blue', 'red'):
        (root / 'data' / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / 'data' / label / f'{i}.png')
    export(model, str(root / 'exported' / 'dla_46_c'))
    return root


def _exported_copy(work, tmp_path):
    shutil.copytree(work / 'exported', tmp_path / 'm')
    return tmp_path / 'm' / 'dla_46_c'


def _nothing_written(out):
    """``out`` holds no file, and no temporary folder was left beside it."""
    if out.exists():
        assert leftovers(out) == [], leftovers(out)
    stray = [p.name for p in out.parent.iterdir() if p.name.startswith('.' + out.name)]
    assert stray == [], stray


def _own_sources():
    names = ['paddle_dla/inference/predictor.py', 'examples/finetune.py', 'examples/finetune_train.py']
    cli = os.path.join(REPO, 'paddle_dla', 'cli')
    names += [os.path.join('paddle_dla', 'cli', n) for n in sorted(os.listdir(cli))
              if n.endswith('.py')]
    for name in names:
        with open(os.path.join(REPO, name), encoding='utf-8') as f:
            yield name, f.read()


def test_entry_points_never_unpickle_with_paddle_or_pickle():
    for name, source in _own_sources():
        assert not re.search(r'paddle\.load\(|pickle\.loads?\(|\bjit\.load\(', source), name


# --- hostile weights ----------------------------------------------------------------------

def test_export_refuses_hostile_weights_and_writes_nothing(tmp_path):
    weights = hostile_pdparams(tmp_path / 'evil.pdparams', tmp_path / 'marker')
    out = tmp_path / 'out'
    proc = run_module('export', '--model', 'dla_46_c', '--weights', weights, '--out', out)
    assert_refused(proc, weights, absent=[tmp_path / 'marker'])
    _nothing_written(out)


@pytest.mark.full
def test_predict_refuses_hostile_weights(tmp_path, work):
    weights = hostile_pdparams(tmp_path / 'evil.pdparams', tmp_path / 'marker')
    proc = run_module('predict', work / 'cat.png', '--model', 'dla_46_c', '--weights', weights)
    assert_refused(proc, weights, absent=[tmp_path / 'marker'])
    assert proc.stdout == ''


@pytest.mark.parametrize('suffix', [pytest.param('.pdparams', marks=pytest.mark.full), '.pdopt'])
def test_finetune_resume_refuses_a_hostile_checkpoint(tmp_path, work, suffix):
    prefix = tmp_path / 'run' / 'last'
    prefix.parent.mkdir()
    shutil.copy(work / 'dla_46_c.pdparams', str(prefix) + '.pdparams')  # readable weights
    (tmp_path / 'run' / 'last.pdopt').write_bytes(b'')
    (tmp_path / 'run' / 'last.json').write_text('{}')
    hostile_pdparams(str(prefix) + suffix, tmp_path / 'marker')
    proc = run_script(FINETUNE, '--model', 'dla_46_c', '--data-dir', work / 'data',
                      '--resume', prefix, '--workers', 0, '--img-size', 32,
                      '--output', tmp_path / 'out')
    assert_refused(proc, str(prefix) + suffix, 'could run code',
                   absent=[tmp_path / 'marker', tmp_path / 'out'])


# --- broken input to fine-tuning ------------------------------------------------------------

def _empty_folder(tmp_path):
    (tmp_path / 'empty' / 'cls').mkdir(parents=True)
    return tmp_path / 'empty'


@pytest.mark.parametrize('case', [
    pytest.param(case, marks=() if case == 'data folder without images' else pytest.mark.full)
    for case in ('missing checkpoint', 'missing data folder', 'data folder without images',
                 'bad option')])
def test_finetune_expected_failures_are_one_line(tmp_path, work, case):
    args = {
        'missing checkpoint': ('--data-dir', work / 'data', '--resume', tmp_path / 'no' / 'last'),
        'missing data folder': ('--data-dir', tmp_path / 'nowhere'),
        'data folder without images': ('--data-dir', _empty_folder(tmp_path)),
        'bad option': ('--data-dir', work / 'data', '--img-size', 8),
    }[case]
    named = {'missing checkpoint': tmp_path / 'no' / 'last.pdparams',
             'missing data folder': tmp_path / 'nowhere',
             'data folder without images': tmp_path / 'empty',
             'bad option': '--img-size'}[case]
    proc = run_script(FINETUNE, '--model', 'dla_46_c', '--no-pretrained', '--workers', 0,
                      '--output', tmp_path / 'out', *args)
    assert_refused(proc, 'finetune.py: error:', named, absent=[tmp_path / 'out'])


@pytest.mark.full
def test_finetune_unreadable_image_fails_naming_it_instead_of_hanging(tmp_path, work):
    data = tmp_path / 'data'
    shutil.copytree(work / 'data', data)
    for label in ('blue', 'red'):  # one in each class: whichever split it lands in
        (data / label / '1.png').write_bytes(b'not an image')
    proc = run_script(FINETUNE, '--model', 'dla_46_c', '--no-pretrained', '--data-dir', data,
                      '--workers', 0, '--img-size', 32, '--batch-size', 2, '--epochs', 1,
                      '--output', tmp_path / 'out', timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    last = stderr_lines(proc)[-1]
    assert last.startswith('finetune.py: error: cannot decode ') and '1.png' in last, last


# --- exported models: written whole, or not at all -----------------------------------------

@pytest.mark.full
@pytest.mark.parametrize('limit', [100_000, 1_000_000], ids=['model-file', 'params-file'])
def test_export_on_a_full_disk_fails_and_leaves_nothing(tmp_path, work, limit):
    out = tmp_path / 'out'
    proc = run_python(FULL_DISK, limit, 'export', '--model', 'dla_46_c', '--weights',
                      work / 'dla_46_c.pdparams', '--out', out)
    line = assert_refused(proc, out / 'dla_46_c', 'is the disk full?')
    assert ('.json' if limit == 100_000 else '.pdiparams') in line
    _nothing_written(out)


@pytest.mark.full
def test_sigterm_during_export_leaves_no_temporary_files(tmp_path, work):
    out = tmp_path / 'out'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'paddle_dla', 'export', '--model', 'dla_46_c', '--weights',
         str(work / 'dla_46_c.pdparams'), '--out', str(out)],
        cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith('.out.') for p in tmp_path.iterdir()):
            assert proc.poll() is None, 'export finished before its temporary folder was seen'
            assert time.monotonic() < deadline, 'no temporary folder appeared'
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == \
        ['paddle-dla export: error: terminated by signal 15']
    _nothing_written(out)


@pytest.mark.full  # the fast tier checks output permissions in test_hostile_weights.py
@pytest.mark.parametrize('umask', [0o022, 0o077], ids=['022', '077'])
def test_exported_files_get_the_umask_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        files = export(paddle_dla.dla_46_c(), str(tmp_path / 'out' / 'm'))
    finally:
        os.umask(old)
    assert len(files) == 3
    for path in files:
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, path
    assert os.stat(tmp_path / 'out').st_mode & 0o777 == 0o777 & ~umask


def test_export_checks_the_parameters_paddle_wrote(tmp_path, monkeypatch):
    """A write that fails without an error (what paddle.jit.save does on a full disk)."""
    save = paddle.jit.save

    def truncating_save(layer, prefix, **kwargs):
        save(layer, prefix, **kwargs)
        os.truncate(prefix + '.pdiparams', os.path.getsize(prefix + '.pdiparams') // 2)
    monkeypatch.setattr(paddle.jit, 'save', truncating_save)
    with pytest.raises(ExportError, match=r'm\.pdiparams is corrupt or truncated: tensor \d+ '
                                          r'ends inside its data.*is the disk full'):
        export(paddle_dla.dla_46_c(), str(tmp_path / 'out' / 'm'))
    _nothing_written(tmp_path / 'out')


def test_export_into_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(ExportError, match='file is not a folder'):
        export(paddle_dla.dla_46_c(), str(tmp_path / 'file' / 'sub' / 'm'))


# --- damaged exported models ----------------------------------------------------------------

@pytest.mark.parametrize('content, phrase', [
    (b'{"variant": "dla_46_c",', 'not valid JSON'),
    (b'[1, 2, 3]', 'expected a JSON object, found list'),
    (b'{"num_classes": 1e300, "input_shape": "all"}', 'unexpected num_classes, input_shape'),
    (b'\xff\xfe garbage', 'not valid JSON'),
], ids=['truncated', 'list', 'wrong-types', 'not-utf8'])
def test_corrupt_metadata_is_named(tmp_path, work, content, phrase):
    prefix = _exported_copy(work, tmp_path)
    meta = str(prefix) + '.dla.json'
    with open(meta, 'wb') as f:
        f.write(content)
    with pytest.raises(ModelFileError, match=phrase) as info:
        Predictor(str(prefix))
    assert meta in str(info.value)


@pytest.mark.parametrize('damage, phrase', [
    ('truncate', 'ends inside its data'),
    ('garbage', 'has an unknown header'),
    ('empty', 'is empty'),
], ids=['truncated', 'garbage', 'empty'])
def test_damaged_parameters_are_named(tmp_path, work, damage, phrase):
    prefix = _exported_copy(work, tmp_path)
    params = str(prefix) + '.pdiparams'
    if damage == 'truncate':
        os.truncate(params, os.path.getsize(params) - 1000)
    else:
        with open(params, 'wb') as f:
            f.write(b'\x07' * 4096 if damage == 'garbage' else b'')
    with pytest.raises(ModelFileError, match=phrase) as info:
        Predictor(str(prefix))
    assert params in str(info.value)


def test_parameter_headers_are_read_exactly(work):
    shapes = tensor_shapes(str(work / 'exported' / 'dla_46_c.pdiparams'))
    expected = [tuple(v.shape) for v in paddle_dla.dla_46_c().state_dict().values()]
    assert sorted(shapes) == sorted(expected)


def test_paddle_failing_to_load_a_model_file_names_it(tmp_path, work):
    prefix = _exported_copy(work, tmp_path)
    model = str(prefix) + '.json'
    os.truncate(model, os.path.getsize(model) // 2)
    with pytest.raises(ModelFileError, match='Paddle Inference cannot load') as info:
        Predictor(str(prefix))
    assert model in str(info.value) and '\n' not in str(info.value)


@pytest.mark.full
def test_predict_with_a_damaged_export_is_one_line(tmp_path, work):
    prefix = _exported_copy(work, tmp_path)
    params = str(prefix) + '.pdiparams'
    os.truncate(params, 1_000_000)
    proc = run_module('predict', work / 'cat.png', '--exported', prefix.parent)
    assert_refused(proc, 'paddle-dla predict: error:', params, 'truncated')


# --- options --------------------------------------------------------------------------------

@pytest.mark.parametrize('argv, phrase', [
    (['predict', 'x.png', '--model', 'dla_46_c', '--topk', '-1'], '--topk: -1 is out of range'),
    (['predict', 'x.png', '--model', 'dla_46_c', '--topk', '0'], '--topk: 0 is out of range'),
    (['export', '--model', 'dla_46_c', '--out', 'o', '--img-size', '0'], '--img-size: 0'),
    (['export', '--model', 'dla_46_c', '--out', 'o', '--img-size', '-5'], '--img-size: -5'),
    (['export', '--model', 'dla_46_c', '--out', 'o', '--img-size', '8'], '--img-size: 8'),
    (['export', '--model', 'dla_46_c', '--out', 'o', '--num-classes', '-1'], '--num-classes'),
    (['predict', 'x.png', '--model', 'dla_46_c', '--num-classes', '0'], '--num-classes'),
    (['predict', 'x.png', '--exported', 'e', '--precision', 'int4'], '--precision'),
    (['predict', 'x.png', '--exported', 'e', '--device', 'tpu'], "--device: 'tpu'"),
    (['predict', 'x.png', '--exported', 'e', '--device', 'gpu:x'], "--device: 'gpu:x'"),
])
def test_options_are_validated_while_parsing(capsys, argv, phrase):
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(argv)
    assert info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and phrase in lines[0], lines


def test_options_parse_when_valid():
    args = cli.build_parser().parse_args(['predict', 'x.png', '--exported', 'e', '--device',
                                          'gpu:1', '--precision', 'bf16', '--topk', '3'])
    assert (args.device, args.precision, args.topk) == ('gpu:1', 'bf16', 3)


@pytest.mark.parametrize('command', ['export', 'predict'])
def test_every_option_has_help_with_its_default(command):
    sub = next(a for a in cli.build_parser()._actions if a.dest == 'command')
    options = [a for a in sub.choices[command]._actions
               if a.option_strings and a.dest != 'help']
    assert options
    for action in options:
        assert re.search(r'\((default|required)\b', action.help or ''), action.option_strings


@pytest.mark.full
def test_topk_above_the_classes_shows_them_all(tmp_path, work):
    """A fine-tuned export with 3 classes and --topk 10: three rows, no error."""
    paddle.seed(0)
    export(paddle_dla.dla_46_c(num_classes=3), str(tmp_path / 'e' / 'dla_46_c'))
    meta = tmp_path / 'e' / 'dla_46_c.dla.json'
    assert json.loads(meta.read_text())['num_classes'] == 3
    proc = run_module('predict', work / 'cat.png', '--exported', tmp_path / 'e', '--topk', 10)
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if line.endswith('%')]) == 3
