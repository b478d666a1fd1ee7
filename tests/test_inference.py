"""The deployed path: export + Paddle Inference Predictor, the paddle-dla CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage

import paddle_dla
from paddle_dla.models.imagenet import class_names
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.weights.convert import convert_state_dict
from paddle_dla.inference import ExportedModelError, Predictor, export
from helpers import (FLOAT32_LIMIT, REPO, child_env, relative_error, run_cli, run_paddle,
                     stderr_lines, top1_agrees)

pytestmark = pytest.mark.paddle_compat

PHOTO = os.path.join(skimage.data_dir, 'chelsea.png')


@pytest.mark.torch
@pytest.mark.full  # the fast tier has test_engines.py's Paddle Inference case on dla_34
@pytest.mark.parametrize('name', ['dla_34', *(pytest.param(n, marks=pytest.mark.sweep)
                                            for n in ('dla_102x2', 'dla_60_res2next'))])
def test_exported_predictor_equals_eager(tmp_path, name):
    """The export at 224 px for dla_34, at 128 px for the larger sweeps ('auto' measures
    every engine on each batch class, and the structure is the same at any size)."""
    from oracle import paddle_model_from_oracle, random_images
    model = paddle_model_from_oracle(name, 'float32')
    size = 224 if name == 'dla_34' else 128
    files = export(model, str(tmp_path / name), input_shape=(None, 3, size, size))
    assert {os.path.splitext(f)[1] for f in files} >= {'.pdiparams'}
    assert any(f.endswith(('.json', '.pdmodel')) for f in files)
    predictor = Predictor(str(tmp_path))
    for batch in (1, 3):
        images = random_images((batch, 3, size, size))
        eager = run_paddle(model, images)
        served = predictor(images.numpy().astype('float32')).astype(np.float64)
        assert relative_error(served, eager) <= FLOAT32_LIMIT
        assert top1_agrees(served, eager)


@pytest.mark.full
@pytest.mark.torch
def test_dynamic_input_size_and_eager_model_left_untouched(tmp_path):
    from oracle import paddle_model_from_oracle, random_images
    model = paddle_model_from_oracle('dla_46_c', 'float32')
    export(model, str(tmp_path / 'm'), input_shape=(None, 3, None, None))
    predictor = Predictor(str(tmp_path / 'm'))
    images = random_images((2, 3, 96, 128))
    assert relative_error(predictor(images.numpy().astype('float32')),
                          run_paddle(model, images)) <= FLOAT32_LIMIT
    assert not hasattr(model.forward, 'concrete_program')  # still the eager forward


def test_predictor_refuses_bad_input(tmp_path):
    export(paddle_dla.dla_46_c(), str(tmp_path / 'm'))
    predictor = Predictor(str(tmp_path / 'm'))
    with pytest.raises(TypeError, match='expected float32 input, got float64'):
        predictor(np.zeros((1, 3, 224, 224)))
    with pytest.raises(ValueError, match=r'expected input of shape \[N, 3, 224, 224\]'):
        predictor(np.zeros((1, 3, 200, 224), 'float32'))
    with pytest.raises(ValueError, match='NCHW'):
        predictor(np.zeros((3, 224, 224), 'float32'))
    with pytest.raises(ExportedModelError, match='paddle-dla export'):
        Predictor(str(tmp_path / 'absent'))


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
    """The oracle's dla_46_c weights (calibrated, so that the top classes are clear apart)."""
    from oracle import oracle_state_dict
    path = tmp_path_factory.mktemp('w') / 'dla_46_c.pdparams'
    save_pdparams(convert_state_dict(oracle_state_dict('dla_46_c'), 'dla_46_c'), path)
    return path


def _lines_with_probabilities(stdout):
    rows = [l for l in stdout.splitlines() if l.startswith('  ') and l.rstrip().endswith('%')]
    return rows, [float(r.rsplit(None, 1)[1][:-1]) / 100 for r in rows]


@pytest.mark.full  # the fast tier exports and predicts through the CLI in test_command.py
@pytest.mark.torch
def test_export_then_predict_in_two_commands(tmp_path, weights_file):
    cli = [sys.executable, '-m', 'paddle_dla']
    out = tmp_path / 'exported'
    proc = subprocess.run(cli + ['export', '--model', 'dla_46_c', '--weights', str(weights_file),
                                 '--out', str(out)], capture_output=True, text=True, cwd=REPO,
                          env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert 'exported dla_46_c (1000 classes, input [N, 3, 224, 224])' in proc.stdout
    served = subprocess.run(cli + ['predict', PHOTO, '--exported', str(out), '--topk', '4'],
                            capture_output=True, text=True, cwd=REPO, env=child_env())
    eager = subprocess.run(cli + ['predict', PHOTO, '--model', 'dla_46_c', '--weights',
                                  str(weights_file), '--topk', '4'],
                           capture_output=True, text=True, cwd=REPO, env=child_env())
    for proc in (served, eager):
        assert proc.returncode == 0, proc.stderr
        rows, probabilities = _lines_with_probabilities(proc.stdout)
        assert len(rows) == 4 and rows[0].startswith('  1. ')
        assert probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1.0 + 1e-9
    names = class_names()
    assert any(n in served.stdout for n in names)
    assert [r.split()[1] for r in _lines_with_probabilities(served.stdout)[0]] == \
           [r.split()[1] for r in _lines_with_probabilities(eager.stdout)[0]]


@pytest.mark.full  # the fast tier has one-line refusals of paddle-dla in test_hostile_deploy.py
@pytest.mark.torch
def test_cli_errors_are_one_line(tmp_path, weights_file):
    cli = [sys.executable, '-m', 'paddle_dla']
    bad_image = tmp_path / 'broken.jpg'
    bad_image.write_bytes(b'not an image')
    cases = [
        (['predict', PHOTO, '--exported', str(tmp_path / 'nothing')], 'no exported model'),
        (['predict', str(bad_image), '--model', 'dla_46_c', '--weights', str(weights_file)],
         'cannot decode'),
        (['export', '--model', 'dla_99', '--out', str(tmp_path / 'x')], 'unknown model'),
    ]
    for args, phrase in cases:
        proc = subprocess.run(cli + args, capture_output=True, text=True, cwd=REPO,
                              env=child_env())
        lines = stderr_lines(proc)
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        prog, _, message = lines[0].partition(': error: ')  # parse errors name the subcommand
        assert prog in ('paddle-dla', f'paddle-dla {args[0]}') and phrase in message, lines[0]


@pytest.mark.full
@pytest.mark.torch
def test_eval_harness_inference_engine(tmp_path, weights_file):
    data = tmp_path / 'val' / 'n02123045'
    data.mkdir(parents=True)
    for name in ('chelsea.png', 'coffee.png', 'rocket.jpg'):
        (data / name).write_bytes(open(os.path.join(skimage.data_dir, name), 'rb').read())
    results = {}
    for engine in ('eager', 'paddle'):
        out = tmp_path / f'{engine}.json'
        proc = run_cli('tools/imagenet_val.py', '--model', 'dla_46_c', '--weights', weights_file,
                       '--data-dir', data.parent, '--engine', engine, '--results-file', out,
                       '--no-progress')
        assert proc.returncode == 0, proc.stderr
        (results[engine],) = json.loads(out.read_text())
    assert results['paddle']['engine'] == 'paddle'
    for key in ('num_images', 'top1', 'top5'):
        assert results['paddle'][key] == results['eager'][key]
