"""The ``paddle-dla`` command as a user runs it: every subcommand in a subprocess, its exit
status, what it prints and the files it writes."""
import argparse
import importlib.metadata
import json
import os
import re
import sys
import zipfile

import numpy as np
import paddle
import pytest
import skimage

import paddle_dla
from paddle_dla.weights.checkpoint import load_pdparams, save_pdparams
from paddle_dla.cli import SUBCOMMANDS, build_parser
from paddle_dla.weights.convert.readers import read_safetensors
from paddle_dla.weights.convert.reverse import paddle_to_torch_state
from hostile import REPO, assert_refused, run_bounded, run_module

PHOTO = os.path.join(skimage.data_dir, 'chelsea.png')
VARIANT = 'dla_46_c'


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Random dla_46_c weights as a .pdparams file."""
    paddle.seed(3)
    path = tmp_path_factory.mktemp('weights') / f'{VARIANT}.pdparams'
    save_pdparams(paddle_dla.create_model(VARIANT).state_dict(), path)
    return path


def _subparsers():
    sub = next(a for a in build_parser()._actions if a.dest == 'command')
    return sub.choices


def test_every_job_has_a_subcommand_and_every_option_help_with_its_default():
    parsers = _subparsers()
    assert set(parsers) == set(SUBCOMMANDS) == {'convert', 'to-torch', 'eval', 'cache',
                                                 'export', 'quantize', 'predict', 'track', 'bench',
                                                 'info'}
    for command, parser in parsers.items():
        options = [a for a in parser._actions if a.option_strings and a.dest != 'help']
        assert any(a.dest == 'verbose' for a in options), command
        for action in options:
            if action.required or action.help in (None, argparse.SUPPRESS):  # hidden: retired
                continue
            assert re.search(r'\((default|required)\b|default:', action.help), \
                (command, action.option_strings)


def test_help_of_the_command_and_every_subcommand(capsys):
    """The command's help as a user runs it; each subcommand's parsed in this process (CI's
    ``tools/help_time.py`` runs every one in a fresh process, and times it)."""
    proc = run_module('--help')
    assert proc.returncode == 0 and all(c in proc.stdout for c in SUBCOMMANDS), proc.stderr
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([command, '--help'])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0, command
        assert out.startswith(f'usage: paddle-dla {command}'), out[:80]


def test_parsing_loads_no_paddle():
    code = ('import sys\nfrom paddle_dla.cli import build_parser\nbuild_parser()\n'
            'print(sorted(m for m in ("paddle", "torch", "numpy") if sys.modules.get(m)))')
    proc = run_bounded([sys.executable, '-c', code])
    assert proc.returncode == 0 and proc.stdout.strip() == "['numpy']", proc.stdout + proc.stderr


def test_info_names_every_variant_and_this_machine():
    proc = run_module('info')
    assert proc.returncode == 0, proc.stderr
    for name, config in paddle_dla.VARIANTS.items():
        assert re.search(rf'^  {name}\s+timm {config.official_name}\b', proc.stdout, re.M), name
    assert 'dla_34.official' in proc.stdout and '74.632' in proc.stdout
    assert re.search(r'^cpu: .+, \d+ logical cores, features: ', proc.stdout, re.M)
    assert re.search(r'^packages: paddle_dla \S+, paddlepaddle', proc.stdout, re.M)


def test_cache_list_verify_and_clean(tmp_path, weights):
    home = tmp_path / 'cache'
    home.mkdir()
    good = home / f'{VARIANT}-official.pdparams'
    good.write_bytes(weights.read_bytes())
    bad = home / 'dla_34-official.pdparams'  # dla_46_c weights under dla_34's name
    bad.write_bytes(weights.read_bytes())
    (home / 'downloads').mkdir()
    (home / 'downloads' / 'dla34-ba72cf86.pth.part').write_bytes(b'x' * 100)
    env = {'PADDLE_DLA_HOME': str(home)}

    proc = run_module('cache', 'list', env=env)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf'^{VARIANT}.official\s+present\s+{good.name}\s+[0-9a-f]{{64}}$',
                     proc.stdout, re.M)
    assert re.search(r'^dla_60.official\s+missing\s+dla_60-official.pdparams$', proc.stdout, re.M)

    proc = run_module('cache', 'verify', env=env)
    assert proc.returncode == 1
    assert re.search(rf'^{VARIANT}.official\s+ok\s', proc.stdout, re.M)
    assert re.search(r'^dla_34.official\s+BAD\s.*dla_34', proc.stdout, re.M)
    assert '2 cached files checked, 1 bad' in proc.stdout

    proc = run_module('cache', 'clean', '--model', 'dla_34', env=env)
    assert proc.returncode == 0 and not bad.exists() and good.exists(), proc.stderr
    assert run_module('cache', 'verify', env=env).returncode == 0
    proc = run_module('cache', 'clean', env=env)
    assert proc.returncode == 0 and '2 files removed' in proc.stdout, proc.stdout
    assert not good.exists() and os.listdir(home / 'downloads') == []


def test_to_torch_writes_safetensors_that_read_back_exactly(tmp_path, weights):
    out = tmp_path / 'back.safetensors'
    proc = run_module('to-torch', '--src', weights, '--dst', out)
    assert proc.returncode == 0, proc.stderr
    assert f'{VARIANT}, 1000 classes' in proc.stdout
    _, expected = paddle_to_torch_state(load_pdparams(weights), VARIANT)
    back = read_safetensors(str(out))
    assert set(back) == set(expected)
    assert all(np.array_equal(back[k], expected[k]) for k in expected)


@pytest.mark.full
def test_export_at_256_then_predict_uses_the_recorded_preprocessing(tmp_path, weights):
    out = tmp_path / 'exported'
    proc = run_module('export', '--model', VARIANT, '--weights', weights, '--out', out,
                      '--img-size', '256', timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / f'{VARIANT}.dla.json').read_text())
    assert meta['preprocessing']['img_size'] == 256 and meta['variant'] == VARIANT
    assert len(meta['class_names']) == 1000 and meta['class_names'][281] == 'tabby'
    proc = run_module('predict', PHOTO, '--exported', out, '--topk', '2', '--engine', 'paddle',
                      timeout=300)  # 'auto' is held to its word in test_engines.py
    assert proc.returncode == 0, proc.stderr
    assert len([l for l in proc.stdout.splitlines() if l.startswith('  ')]) == 2

    os.remove(out / f'{VARIANT}.dla.json')  # an export that says nothing about itself
    proc = run_module('predict', PHOTO, '--exported', out, timeout=300)
    assert_refused(proc, 'give --model NAME')
    proc = run_module('predict', PHOTO, '--exported', out, '--model', VARIANT, '--engine',
                      'paddle', timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.full
def test_export_records_the_class_names_given_and_predict_shows_them(tmp_path):
    paddle.seed(4)
    small = tmp_path / 'pets.pdparams'
    save_pdparams(paddle_dla.create_model(VARIANT, num_classes=3).state_dict(), small)
    names = tmp_path / 'pets.txt'
    names.write_text('cat\ndog\nrabbit\n')
    out = tmp_path / 'exported'
    proc = run_module('export', '--model', VARIANT, '--weights', small, '--num-classes', '3',
                      '--class-names', names, '--out', out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc = run_module('predict', PHOTO, '--exported', out, '--topk', '3', timeout=300)
    assert proc.returncode == 0, proc.stderr
    shown = sorted(l.split()[1] for l in proc.stdout.splitlines() if l.startswith('  '))
    assert shown == ['cat', 'dog', 'rabbit']
    names.write_text('cat\ndog\n')
    proc = run_module('export', '--model', VARIANT, '--weights', small, '--num-classes', '3',
                      '--class-names', names, '--out', tmp_path / 'x', timeout=300)
    assert_refused(proc, 'has 2 names but the model has 3 classes', absent=[tmp_path / 'x'])


@pytest.mark.full
def test_bench_quick_reports_progress_and_a_table(tmp_path):
    proc = run_module('bench', '--quick', '--engines', 'paddle fp32', timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert 'measuring dla_46_c at batch 1' in proc.stderr
    assert re.search(r'^\| dla_46_c \| 1 \| paddle fp32 \| [0-9.]+ \|', proc.stdout, re.M)
    assert 'openvino' not in proc.stdout.split('\n', 1)[1]  # only what was asked, and eager
    refused = run_module('bench', '--engine', 'openvino,inference', timeout=60)
    assert refused.returncode == 2 and "unknown engine 'inference'" in refused.stderr


def test_bench_engines_by_table_name_or_engine_name():
    from paddle_dla.cli.bench import engine_list
    assert engine_list('paddle fp32') == {'paddle fp32'}
    assert engine_list('openvino, onnxruntime') == {'openvino fp32', 'openvino bf16',
                                                    'openvino int8', 'onnxruntime fp32'}
    assert engine_list('nncf') == {'nncf int8'}
    assert engine_list('torch') == {'torch eager', 'torch channels-last'}


@pytest.mark.full
def test_the_wheel_holds_every_command(tmp_path):
    proc = run_bounded([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                        '--no-build-isolation', '-q', '-w', str(tmp_path), REPO], timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob('paddle_dla-*.whl')
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith('entry_points.txt'))
    modules = {f'paddle_dla/cli/{m}.py' for m in SUBCOMMANDS.values()}
    assert modules <= names, modules - names
    # Every module of every folder (a folder without an __init__ would be left out).
    package = os.path.join(REPO, 'paddle_dla')
    sources = {os.path.relpath(os.path.join(root, f), REPO).replace(os.sep, '/')
               for root, _, files in os.walk(package) for f in files if f.endswith('.py')}
    assert len(sources) > 40 and sources <= names, sources - names
    assert 'paddle_dla/data/imagenet_classes.tsv' in names
    assert 'paddle-dla = paddle_dla.cli:main' in entry_points


def test_the_installed_console_command_runs():
    scripts = [e for e in importlib.metadata.entry_points(group='console_scripts')
               if e.name == 'paddle-dla']
    if not scripts:
        pytest.skip('paddle_dla is not installed (pip install -e .)')
    assert scripts[0].value == 'paddle_dla.cli:main'
    command = os.path.join(os.path.dirname(sys.executable), 'paddle-dla')
    proc = run_bounded([command, 'info', '--model', VARIANT])
    assert proc.returncode == 0 and f'  {VARIANT} ' in proc.stdout, proc.stderr
