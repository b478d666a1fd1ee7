"""``predict`` opens its report with the engine that ran the model and how it was chosen:
requested, measured now by 'auto', or remembered from an earlier measurement."""
import os
import re

import paddle
import pytest
import skimage

import paddle_dla
from paddle_dla.inference.exported import locate, read_metadata
from paddle_dla.inference import Predictor, describe_engine, export
from paddle_dla.inference.runtimes import (choice_key, class_key, input_class, installed_engines,
                                         remember_choice)
from hostile import run_module

pytestmark = pytest.mark.paddle_compat

PHOTO = os.path.join(skimage.data_dir, 'chelsea.png')
ENGINES = installed_engines('cpu', 'fp32')
# Paddle 2.6's paddle2onnx (1.3) cannot translate a deformable convolution: no onnxruntime
# for the dense networks there (OpenVINO reads the .pdmodel itself).
_NO_DENSE_ONNX = ('onnxruntime',) if paddle.__version__.startswith('2.') else ()


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    """(weights file, export folder) of a random dla_46_c."""
    folder = tmp_path_factory.mktemp('classifier')
    paddle.seed(3)
    model = paddle_dla.create_model('dla_46_c')
    paddle.save(model.state_dict(), str(folder / 'dla_46_c.pdparams'))
    export(model, str(folder / 'exported' / 'dla_46_c'))
    return folder / 'dla_46_c.pdparams', folder / 'exported'


@pytest.fixture(scope='module')
def centernet(tmp_path_factory):
    """(weights file, export folder at 128 px) of a random centernet_dla34."""
    folder = tmp_path_factory.mktemp('centernet')
    paddle.seed(4)
    model = paddle_dla.create_model('centernet_dla34')
    paddle.save(model.state_dict(), str(folder / 'centernet_dla34.pdparams'))
    export(model, str(folder / 'exported' / 'centernet_dla34'), (None, 3, 128, 128))
    return folder / 'centernet_dla34.pdparams', folder / 'exported'


def _report(*args, home, timeout=180):
    """predict's stdout lines, with its cache (and remembered engine choices) in ``home``."""
    proc = run_module('predict', PHOTO, *args, env={'PADDLE_DLA_HOME': str(home)},
                      timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) > 1 and lines[1] == PHOTO, proc.stdout  # the rest as before
    return lines


def _assert_measured_then_remembered(*args, home, timeout=180, may_fail=()):
    """The first run measures every installed engine (all but ``may_fail`` must give a
    rate, those may say they could not run it), the second, in the same cache, names the
    same engine as remembered."""
    first = _report(*args, home=home, timeout=timeout)[0]
    found = re.fullmatch(r'engine: (\w+) \(auto: measured now: (.+) img/s(.*)\)', first)
    assert found and found.group(1) in ENGINES, first
    rated = dict(re.findall(r'(\w+) ([\d.e+-]+)', found.group(2)))
    failed = re.search(r'; (.+) could not run it', found.group(3))
    failed = failed.group(1).split(', ') if failed else []
    assert set(ENGINES) - set(may_fail) <= set(rated) and set(rated) | set(failed) == set(
        ENGINES), first
    second = _report(*args, home=home, timeout=timeout)[0]
    assert second == f'engine: {found.group(1)} (auto: remembered for this machine)'


@pytest.mark.full  # the fast tier keeps one case of this item
def test_exported_classifier_names_the_requested_engine(tmp_path, classifier):
    _, exported = classifier
    lines = _report('--exported', exported, '--engine', 'paddle', home=tmp_path)
    assert lines[0] == 'engine: paddle (requested)'


@pytest.mark.full  # the fast tier keeps one case of this item
def test_exported_classifier_auto_is_measured_then_remembered(tmp_path, classifier):
    _, exported = classifier
    _assert_measured_then_remembered('--exported', exported, '--topk', '2', home=tmp_path)


def test_eager_model_says_it_was_requested(tmp_path, classifier):
    weights, _ = classifier
    lines = _report('--model', 'dla_46_c', '--weights', weights, '--engine', 'eager',
                    home=tmp_path)
    assert lines[0] == 'engine: eager (requested)'


@pytest.mark.full  # the fast tier keeps one case of this item
def test_exported_dense_model_auto_is_measured_then_remembered(tmp_path, centernet):
    """CenterNet's deformable convolutions on every engine: each is measured."""
    _, exported = centernet
    _assert_measured_then_remembered('--exported', exported, '--out-dir', tmp_path / 'drawn',
                                     home=tmp_path / 'home', may_fail=_NO_DENSE_ONNX)


@pytest.mark.full
def test_model_classifier_auto_is_measured_then_remembered(tmp_path, classifier):
    weights, _ = classifier
    _assert_measured_then_remembered('--model', 'dla_46_c', '--weights', weights,
                                     home=tmp_path)


@pytest.mark.full
def test_model_dense_auto_then_requested_and_eager(tmp_path, centernet):
    weights, _ = centernet
    model = ('--model', 'centernet_dla34', '--weights', weights, '--out-dir', tmp_path / 'a',
             '--input-size', '256x256')  # the engine line is the same at any input
    _assert_measured_then_remembered(*model, home=tmp_path / 'home', timeout=600,
                                     may_fail=_NO_DENSE_ONNX)
    for engine in ('paddle', 'eager'):
        lines = _report(*model, '--engine', engine, home=tmp_path / 'home', timeout=600)
        assert lines[0] == f'engine: {engine} (requested)'


def test_a_remembered_engine_gone_since_is_measured_again(tmp_path, classifier, monkeypatch):
    """A record naming an engine no longer installed: 'auto' measures again, and says why."""
    _, exported = classifier
    monkeypatch.setenv('PADDLE_DLA_HOME', str(tmp_path))
    prefix, model_file = locate(str(exported))
    meta = read_metadata(prefix)
    key = choice_key(model_file, meta, 'cpu', 'fp32', None)
    remember_choice(class_key(key, input_class((1, 3, 224, 224), meta.get('input_shape'))),
                    {'engine': 'openvino'})
    monkeypatch.setattr('paddle_dla.inference.predictor.installed_engines', lambda *_: ['paddle'])
    predictor = Predictor(exported)
    assert describe_engine(predictor) == ('paddle (auto: Paddle Inference until the first '
                                          'batch is measured)')
    predictor(paddle.rand([1, 3, 224, 224]).numpy())
    assert re.fullmatch(r'paddle \(auto: measured now: paddle [\d.]+ img/s, no other engine '
                        r'installed; the remembered openvino is no longer available\)',
                        describe_engine(predictor)), describe_engine(predictor)
