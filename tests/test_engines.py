"""The engines behind an exported model (Paddle Inference, OpenVINO, onnxruntime), the
'auto' choice between them, the cached ONNX translation, ``compile_model`` and
``paddle-dla eval --engine``.

The reference is the eager Paddle model in float32. Random weights alone make activations
explode through the network, so the models here get random BatchNorm affine parameters and
running statistics re-estimated on random images (the oracle's calibration, done in Paddle:
no torch needed), which also sets the top classes clearly apart.

Every test runs with its own ``$PADDLE_DLA_HOME`` (the ``home`` fixture), so that no
translation, export or remembered choice leaks between tests or into ``~/.cache``.
"""
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import skimage

import paddle_dla
from paddle_dla.inference import predictor as inference
from paddle_dla.inference import runtimes
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.inference.engines import ENGINE_CHOICES, ENGINE_EXTRAS, ENGINES
from paddle_dla.inference.exported import MODEL_SUFFIXES, META_SUFFIX, PARAMS_SUFFIX, cpu_supports_bf16
from paddle_dla.inference import EngineUnavailable, Predictor, compile_model, export
from paddle_dla.models.layers import BN_MOMENTUM
from helpers import (FLOAT32_LIMIT, REPO, child_env, pick_label, relative_error, run_paddle,
                     top1_agrees)
from hostile import run_module

pytestmark = pytest.mark.paddle_compat

TOL = FLOAT32_LIMIT  # float32 engines against eager float32 (relative error)
MISTAKE = 100 * TOL  # what a real mistake must exceed: orders of magnitude above TOL
DYNAMIC = (None, 3, None, None)
FAST_INPUTS = ((2, 3, 224, 224), (2, 3, 160, 224))  # square and non-square
FULL_INPUTS = ((1, 3, 224, 224), (3, 3, 224, 224), (1, 3, 160, 224), (3, 3, 160, 224))
OPTIONAL = ('openvino', 'onnxruntime')


# --- models, exports and references ------------------------------------------------------

def calibrated(variant, seed=0):
    """``variant`` with random weights, random BatchNorm affine parameters and running
    statistics re-estimated on random images (one train-mode forward, momentum 0), in eval
    mode."""
    paddle.seed(seed)
    model = paddle_dla.create_model(variant)
    gen = np.random.default_rng(seed)
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for bn in bns:
        bn.weight.set_value(gen.uniform(0.5, 1.5, bn.weight.shape).astype('float32'))
        bn.bias.set_value(gen.normal(0.0, 0.2, bn.bias.shape).astype('float32'))
        bn._momentum = 0.0  # running statistics := those of the calibration batch
    model.train()
    with paddle.no_grad():
        model(paddle.to_tensor(gen.standard_normal((8, 3, 64, 64)).astype('float32')))
    for bn in bns:
        bn._momentum = BN_MOMENTUM
    model.eval()
    return model


def damaged(model):
    """A copy of ``model`` with one BatchNorm's weight zeroed (the middle one of the
    network): the kind of mistake a conversion or export bug makes."""
    bad = copy.deepcopy(model)
    bns = [(n, m) for n, m in bad.named_sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    _, bn = bns[len(bns) // 2]
    bn.weight.set_value(paddle.zeros_like(bn.weight))
    return bad


def random_images(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def assert_parity(ours, reference):
    assert ours.shape == reference.shape
    error = relative_error(ours, reference)
    assert error <= TOL, error
    assert top1_agrees(ours, reference)


class Case:
    """A calibrated model exported with a dynamic input size, a damaged copy exported
    beside it, and the eager float32 logits of both on a few random batches."""

    def __init__(self, variant, root, inputs):
        self.variant = variant
        self.model = calibrated(variant)
        self.damaged_model = damaged(self.model)
        self.prefix = str(root / 'good' / variant)
        self.damaged_prefix = str(root / 'damaged' / variant)
        export(self.model, self.prefix, input_shape=DYNAMIC)
        export(self.damaged_model, self.damaged_prefix, input_shape=DYNAMIC)
        self.inputs = {shape: random_images(shape, seed=i + 1) for i, shape in enumerate(inputs)}
        self.reference = {shape: run_paddle(self.model, x) for shape, x in self.inputs.items()}
        self.first = inputs[0]
        self.damaged_reference = run_paddle(self.damaged_model, self.inputs[self.first])
        for logits in self.reference.values():
            # not a vacuous standard: logits above 1 and at least one decided top-1
            assert np.abs(logits).max() > 1
            top2 = np.sort(logits, axis=1)[:, -2:]
            assert (top2[:, 1] - top2[:, 0] > 1e-2).any()
        # the mistake is real in eager mode already
        assert relative_error(self.damaged_reference, self.reference[self.first]) > MISTAKE

    def x(self, shape=None):
        return self.inputs[shape or self.first].astype('float32')

    @property
    def model_file(self):
        return next(self.prefix + s for s in MODEL_SUFFIXES if os.path.isfile(self.prefix + s))


@pytest.fixture(scope='module')
def cases(tmp_path_factory):
    """``cases(variant, inputs)``: a :class:`Case`, built once per module."""
    built = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('PADDLE_DLA_HOME', str(tmp_path_factory.mktemp('module-home')))

        def get(variant, inputs=FAST_INPUTS):
            if (variant, inputs) not in built:
                built[variant, inputs] = Case(variant, tmp_path_factory.mktemp(variant), inputs)
            return built[variant, inputs]
        yield get


@pytest.fixture
def dla34(cases):
    return cases('dla_34')


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """An empty ``$PADDLE_DLA_HOME`` for every test."""
    path = tmp_path / 'home'
    monkeypatch.setenv('PADDLE_DLA_HOME', str(path))
    return path


def needs_onnx_route(model_file):
    """OpenVINO reads Paddle 2.6's .pdmodel itself; anything else goes through paddle2onnx."""
    return not model_file.endswith('.pdmodel')


def require(engine, model_file):
    """Skip unless ``engine`` and what it needs to read ``model_file`` are installed."""
    if engine == 'paddle':
        return
    pytest.importorskip(engine)
    if engine == 'onnxruntime' or needs_onnx_route(model_file):
        pytest.importorskip('paddle2onnx')


def runnable_engines(model_file):
    """The engines 'auto' must measure here: Paddle and each installed optional one."""
    names = ['paddle']
    for name in OPTIONAL:
        if importlib.util.find_spec(name) is None:
            continue
        if (name == 'onnxruntime' or needs_onnx_route(model_file)) and \
                importlib.util.find_spec('paddle2onnx') is None:
            continue
        names.append(name)
    return names


def translations(home):
    return sorted((home / 'compiled' / 'onnx').glob('*.onnx'))


def choices_file(home):
    return home / 'compiled' / 'engine-choice.json'


def refuse(*args, **kwargs):
    raise AssertionError('called where it should not be')


# --- 1. each engine against eager Paddle, and a real mistake ------------------------------

def check_engine(case, engine, home):
    require(engine, case.model_file)
    predictor = Predictor(case.prefix, engine=engine)
    assert predictor.engine == engine and predictor.choice is None
    for shape in case.inputs:
        assert_parity(predictor(case.x(shape)), case.reference[shape])
    wrong = Predictor(case.damaged_prefix, engine=engine)(case.x())
    # the engine runs the damaged model faithfully...
    assert_parity(wrong, case.damaged_reference)
    # ...and the parity standard catches the mistake by more than two orders of magnitude
    assert relative_error(wrong, case.reference[case.first]) > MISTAKE
    onnx = engine == 'onnxruntime' or (engine == 'openvino' and needs_onnx_route(case.model_file))
    assert len(translations(home)) == (2 if onnx else 0)
    assert not choices_file(home).exists()  # an explicit engine measures nothing


@pytest.mark.parametrize('engine', ENGINES)
def test_engine_equals_eager_and_catches_a_mistake(dla34, engine, home):
    check_engine(dla34, engine, home)


@pytest.mark.full
@pytest.mark.sweep  # Paddle 2.6 runs the dla_34 case above
@pytest.mark.parametrize('engine', ENGINES)
@pytest.mark.parametrize('variant', ['dla_46_c', 'dla_60_res2next', 'dla_102x'])
def test_engine_equals_eager_more_variants(cases, variant, engine, home):
    check_engine(cases(variant, FULL_INPUTS), engine, home)


# --- 2. 'auto': measured on first use, remembered -----------------------------------------

def count_measurements(monkeypatch, what):
    """The measurements 'auto' makes from now on, each as ``what(engines, batch)``."""
    measured, choose = [], inference.choose_engine

    def counting(engines, batch, *args):
        measured.append(what(engines, batch))
        return choose(engines, batch, *args)
    monkeypatch.setattr(inference, 'choose_engine', counting)
    return measured


def test_auto_measures_on_first_use_then_remembers(dla34, home, monkeypatch):
    measured = count_measurements(monkeypatch, lambda engines, batch: sorted(engines))
    counting = inference.choose_engine
    runnable = runnable_engines(dla34.model_file)
    shape = FAST_INPUTS[1]

    first = Predictor(dla34.prefix)
    assert first.engine == 'paddle' and first.choice is None  # nothing measured yet
    assert not choices_file(home).exists()
    assert_parity(first(dla34.x(shape)), dla34.reference[shape])
    choice = first.choice
    assert measured == [sorted(runnable)]
    assert set(choice) == {'engine', 'images_per_s', 'batch_size', 'unavailable', 'measured'}
    rates = choice['images_per_s']
    assert set(rates) == set(runnable) and all(r > 0 for r in rates.values()), rates
    assert choice['engine'] == max(rates, key=rates.get) == first.engine
    assert choice['batch_size'] == shape[0] and choice['unavailable'] == {}
    assert_parity(first(dla34.x(shape)), dla34.reference[shape])  # with the engine kept
    assert len(measured) == 1  # once, not per call
    saved = json.loads(choices_file(home).read_text())
    assert list(saved.values()) == [choice]

    # A second Predictor for the same model opens the remembered engine, measuring nothing.
    monkeypatch.setattr(inference, 'choose_engine', refuse)
    monkeypatch.setattr(runtimes, 'measure_engines', refuse)
    second = Predictor(dla34.prefix)
    assert second.choice == choice and second.engine == choice['engine']
    assert_parity(second(dla34.x(shape)), dla34.reference[shape])

    # What opens is what the file names, whichever engine that is.
    others = [name for name in runnable if name != choice['engine']]
    if others:
        (key,) = saved
        saved[key]['engine'] = others[0]
        choices_file(home).write_text(json.dumps(saved))
        third = Predictor(dla34.prefix)
        assert third.engine == others[0] and third.choice['engine'] == others[0]
        assert_parity(third(dla34.x(shape)), dla34.reference[shape])

    # Another thread count is another measurement.
    monkeypatch.setattr(inference, 'choose_engine', counting)
    other_threads = Predictor(dla34.prefix, threads=(os.cpu_count() or 1) + 1)
    assert other_threads.engine == 'paddle' and other_threads.choice is None


@pytest.mark.full
def test_auto_remembers_a_choice_per_batch_class(dla34, home, monkeypatch):
    """One image and a batch are measured apart (engines rank differently on them), and so
    are images of another area where the export leaves it free, each once per predictor;
    a later predictor measures none of them again."""
    measured = count_measurements(monkeypatch, lambda engines, batch: batch.shape)
    shape, smaller = FAST_INPUTS
    one = dla34.x(shape)[:1]
    predictor = Predictor(dla34.prefix)
    for batch in (dla34.x(shape), dla34.x(shape), one, one, dla34.x(shape), dla34.x(smaller),
                  dla34.x(smaller)):
        predictor(batch)
    assert measured == [shape, one.shape, smaller]
    keys = list(json.loads(choices_file(home).read_text()))
    assert [key.rsplit(' | ', 1)[1] for key in keys] == [
        'batch 2-7, 64 kpx', 'batch 1, 64 kpx', 'batch 2-7, 32 kpx']
    monkeypatch.setattr(inference, 'choose_engine', refuse)
    monkeypatch.setattr(runtimes, 'measure_engines', refuse)
    again = Predictor(dla34.prefix)
    assert_parity(again(dla34.x(shape)), dla34.reference[shape])
    again(one)
    assert_parity(again(dla34.x(smaller)), dla34.reference[smaller])
    assert again.how_chosen == 'auto: remembered for this machine'


@pytest.mark.full
def test_a_choice_that_loses_in_steady_state_is_measured_once_more(dla34, home, monkeypatch):
    """A measurement on a noisy batch (made here by reporting the winner a thousand times
    and a runner-up five hundred times faster than it ran) is taken once more after the
    chosen engine's steady calls show it losing by more than the noise; and only once."""
    calls = []

    def noisy(engines, batch, *args):
        name, rates, failed = choose(engines, batch, *args)
        calls.append(len(batch))
        if len(calls) == 1:
            rates = dict(rates, **{name: 1000 * rates[name],
                                   'noisy runner-up': 500 * rates[name]})
        return name, rates, failed
    choose = inference.choose_engine
    monkeypatch.setattr(inference, 'choose_engine', noisy)
    predictor = Predictor(dla34.prefix)
    batch = dla34.x()
    for _ in range(inference.STEADY_CALLS - 1):  # the first call measures and is timed too
        predictor(batch)
    assert calls == [len(batch)] and 'measured_again' not in predictor.choice
    predictor(batch)
    assert calls == [len(batch)] * 2 and predictor.choice['measured_again'] is True
    assert 'noisy runner-up' not in predictor.choice['images_per_s']
    for _ in range(2 * inference.STEADY_CALLS):
        predictor(batch)
    assert len(calls) == 2
    (saved,) = json.loads(choices_file(home).read_text()).values()
    assert saved == predictor.choice


@pytest.mark.full
@pytest.mark.sweep  # the steady check of test_a_choice_that_loses... runs on Paddle 2.6
def test_a_remembered_choice_not_yet_confirmed_is_timed_where_it_is_reused(
        dla34, home, monkeypatch):
    """A process that ends before its choice's steady calls (a ``predict`` of one image)
    leaves the choice unconfirmed: the next process to reuse it times it, records it as
    confirmed when it holds up, and measures again when it loses by more than the noise; a
    confirmed choice is trusted as it is."""
    batch = dla34.x()
    Predictor(dla34.prefix)(batch)  # measured, then the process ends
    ((key, record),) = json.loads(choices_file(home).read_text()).items()
    assert 'confirmed' not in record
    rate = record['images_per_s'][record['engine']]
    noisy = dict(record, images_per_s=dict(record['images_per_s'], **{
        record['engine']: 1000 * rate, 'noisy runner-up': 500 * rate}))
    # measured far below what it will run at: it holds up whatever the machine's noise
    modest = dict(record, images_per_s={record['engine']: rate / 1000})
    measured = count_measurements(monkeypatch, lambda engines, batch: len(batch))
    for saved, measurements in ((modest, 0), (dict(noisy, confirmed=True), 0), (noisy, 1)):
        choices_file(home).write_text(json.dumps({key: saved}))
        predictor = Predictor(dla34.prefix)
        assert predictor.how_chosen == 'auto: remembered for this machine'
        for _ in range(inference.STEADY_CALLS + 2):
            predictor(batch)
        assert len(measured) == measurements, saved
        (now,) = json.loads(choices_file(home).read_text()).values()
        if measurements:
            assert now['measured_again'] is True and 'noisy runner-up' not in now['images_per_s']
        else:
            assert now == dict(saved, confirmed=True)


def test_outputs_are_ordered_by_their_fetch_names():
    """paddle2onnx names the i-th output fetch_name_i: engines order outputs by it (a
    quantizer or engine may list them otherwise), and leave other names as listed."""
    listed = ['fetch_name_2', 'fetch_name_0', 'fetch_name_10', 'fetch_name_1']
    assert runtimes.fetch_order(listed) == ['fetch_name_0', 'fetch_name_1', 'fetch_name_2',
                                            'fetch_name_10']
    assert runtimes.fetch_order(['logits', 'fetch_name_0']) == ['logits', 'fetch_name_0']
    assert runtimes.fetch_order(['fetch_name_1', 'fetch_name_01']) == ['fetch_name_1',
                                                                       'fetch_name_01']


class _Shifted:
    """An engine that runs fast and computes something else: every output shifted by
    ``shift`` (what a broken translation or kernel looks like from outside)."""

    def __init__(self, engine, shift):
        self.name, self._engine, self._shift = engine.name, engine, shift

    def __call__(self, batch):
        return self.all_outputs(batch)[0]

    def all_outputs(self, batch):
        return [out + self._shift for out in self._engine.all_outputs(batch)]


@pytest.mark.full
def test_auto_never_chooses_an_engine_that_disagrees_with_paddle(dla34, home, monkeypatch):
    """A candidate must meet the parity standard against Paddle Inference on the measuring
    batch before its speed counts: shifted by 100x the float32 limit, it is left out with
    the reason, however fast; shifted within the limit, it stays a candidate."""
    others = [name for name in runnable_engines(dla34.model_file) if name != 'paddle']
    if not others:
        pytest.skip('no optional engine installed')
    real_open = inference.open_engine
    scale = max(1.0, float(np.max(np.abs(dla34.reference[dla34.first]))))
    for shift, kept in ((100 * TOL * scale, False), (TOL / 10, True)):
        def shifted(name, **kwargs):
            engine = real_open(name, **kwargs)
            return engine if name == 'paddle' else _Shifted(engine, shift)
        monkeypatch.setattr(inference, 'open_engine', shifted)
        if choices_file(home).exists():
            choices_file(home).unlink()  # measure again
        predictor = Predictor(dla34.prefix)
        predictor(dla34.x())
        unavailable = predictor.choice['unavailable']
        if kept:
            assert not set(others) & set(unavailable), unavailable
        else:
            assert set(predictor.choice['images_per_s']) == {'paddle'}
            assert predictor.engine == 'paddle'
            for name in others:
                assert 'differs from Paddle Inference\'s by' in unavailable[name], unavailable


def test_an_engine_failing_at_run_time_falls_back_to_paddle_and_is_forgotten(
        dla34, home, monkeypatch, capfd):
    others = [name for name in runnable_engines(dla34.model_file) if name != 'paddle']
    if not others:
        pytest.skip('no optional engine installed')
    first = Predictor(dla34.prefix)
    first(dla34.x())
    (key,) = json.loads(choices_file(home).read_text())
    versions = key.split(' | ')[-2]  # the engines' versions and ours are in the key
    # ours as the code says, whatever an editable install's metadata recorded
    assert 'paddlepaddle ' in versions and f'paddle_dla {paddle_dla.__version__} ' in versions
    # and the class of the input: its batch size, and its area (the export's is free)
    assert key.endswith(' | batch 2-7, 64 kpx')
    one_image = key.replace(' | batch 2-7, 64 kpx', ' | batch 1, 64 kpx')
    saved = {key: dict(first.choice, engine=others[0]),
             one_image: dict(first.choice, engine=others[0])}
    choices_file(home).write_text(json.dumps(saved))
    real_open = inference.open_engine

    class Failing:
        name = others[0]

        def all_outputs(self, batch):
            raise RuntimeError('a kernel failed')

    monkeypatch.setattr(inference, 'open_engine', lambda name, **kw: Failing() if name ==
                        others[0] else real_open(name, **kw))
    predictor = Predictor(dla34.prefix)
    assert predictor.engine == others[0] and predictor.how_chosen.startswith('auto: remem')
    capfd.readouterr()
    assert_parity(predictor(dla34.x()), dla34.reference[dla34.first])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and f'warning: {others[0]} failed' in err[0], err
    assert 'a kernel failed' in err[0] and 'forgotten' in err[0]
    assert predictor.engine == 'paddle' and predictor.choice['failed_at_run_time'] == others[0]
    assert predictor.how_chosen == (f'auto: {others[0]} failed at run time, Paddle Inference '
                                    f'took over')
    assert json.loads(choices_file(home).read_text()) == {}  # every class of that engine
    with pytest.raises(RuntimeError, match='a kernel failed'):  # a named engine: no fallback
        Predictor(dla34.prefix, engine=others[0])(dla34.x())

    # Where Paddle fails on the input as well, the input is at fault: both errors are
    # raised, nothing is said to be forgotten, and the choice stays.
    choices_file(home).write_text(json.dumps(saved))

    class FailingPaddle(Failing):
        name = 'paddle'
    monkeypatch.setattr(inference, 'open_engine', lambda name, **kw: FailingPaddle() if name ==
                        'paddle' else Failing())
    predictor = Predictor(dla34.prefix)
    capfd.readouterr()
    with pytest.raises(RuntimeError, match=f'{others[0]} failed .*a kernel failed; Paddle '
                                           f'Inference as well: a kernel failed'):
        predictor(dla34.x())
    assert capfd.readouterr().err == ''
    assert json.loads(choices_file(home).read_text()) == saved


@pytest.mark.full  # the fast tier checks the records themselves (test_engine_choice.py)
@pytest.mark.sweep  # about the file, not the Paddle version: not repeated on Paddle 2.6
@pytest.mark.parametrize('record', [
    {'engine': ['openvino']}, {'engine': 'paddle', 'images_per_s': 'fast'},
    {'engine': {'a': 1}}, {'engine': 'tensorrt'}, 'openvino', None,
    {'engine': 'paddle', 'images_per_s': [1]},
    {'engine': 'paddle', 'images_per_s': {'paddle': 'fast'}},
])
def test_a_remembered_record_that_is_not_one_is_measured_again(dla34, home, monkeypatch,
                                                                  record):
    """The file is a cache any process may have written: a record under the model's own
    key that names no engine, or rates that are not numbers, counts as none."""
    for name in OPTIONAL:  # only Paddle to measure: this is about the record
        monkeypatch.setitem(sys.modules, name, None)
    Predictor(dla34.prefix)(dla34.x())
    (key,) = json.loads(choices_file(home).read_text())
    choices_file(home).write_text(json.dumps({key: record}))
    predictor = Predictor(dla34.prefix)
    assert predictor.engine == 'paddle' and predictor.choice is None
    assert_parity(predictor(dla34.x()), dla34.reference[dla34.first])
    assert predictor.how_chosen.startswith('auto: measured now')


@pytest.mark.parametrize('content', [
    b'\x00\xff\xfe garbage \x89PNG\r\n',
    pytest.param(b'{"truncated": {"engine": "onnx', marks=pytest.mark.full),
    pytest.param(b'[1, 2, 3]', marks=pytest.mark.full),
    pytest.param(b'{"some other key": "not a record"}', marks=pytest.mark.full),
    # json raises RecursionError on deeply nested input, not ValueError
    b'[' * 100000,
])
def test_corrupt_choice_file_is_ignored(dla34, home, monkeypatch, content):
    for name in OPTIONAL:  # only Paddle to measure: this is about the file
        monkeypatch.setitem(sys.modules, name, None)
    choices_file(home).parent.mkdir(parents=True)
    choices_file(home).write_bytes(content)
    predictor = Predictor(dla34.prefix)
    assert predictor.engine == 'paddle' and predictor.choice is None
    assert_parity(predictor(dla34.x()), dla34.reference[dla34.first])
    assert set(predictor.choice['images_per_s']) == {'paddle'}
    saved = json.loads(choices_file(home).read_text())  # rewritten, readable again
    assert predictor.choice in saved.values()


# --- 3. explicit engines that cannot run --------------------------------------------------

def test_unknown_engine_names_the_choices(dla34):
    for bad in ('tensorrt', 'eager', 'ONNXRuntime', ''):
        with pytest.raises(ValueError, match='engine must be one of') as info:
            Predictor(dla34.prefix, engine=bad)
        assert all(name in str(info.value) for name in ENGINE_CHOICES)
        assert repr(bad) in str(info.value)


def test_bf16_where_this_cpu_allows_it(dla34):
    if not cpu_supports_bf16():
        for engine in ENGINE_CHOICES:  # refused before any engine is opened
            with pytest.raises(ValueError, match='no bfloat16 support'):
                Predictor(dla34.prefix, engine=engine, precision='bf16')
        return
    with pytest.raises(EngineUnavailable, match='onnxruntime is offered for fp32 and int8 on CPU'):
        Predictor(dla34.prefix, engine='onnxruntime', precision='bf16')
    predictor = Predictor(dla34.prefix, precision='bf16')  # auto leaves onnxruntime out
    predictor(dla34.x())
    assert 'onnxruntime' not in predictor.choice['images_per_s']


def test_engines_refuse_what_they_cannot_run(dla34):
    """Checked before the engine's package is imported: the same with or without it."""
    cases = [(dict(engine='onnxruntime', device='gpu'), 'onnxruntime is offered for fp32 and int8 on CPU'),
             (dict(engine='openvino', device='gpu:1', precision='fp16'),
              'OpenVINO is offered for fp32, bf16 and int8 on CPU'),
             (dict(engine='openvino', device='gpu', tensorrt=True),
              'TensorRT runs through engine="paddle"')]
    for kwargs, message in cases:
        with pytest.raises(EngineUnavailable, match=re.escape(message)):
            Predictor(dla34.prefix, **kwargs)


@pytest.mark.parametrize('engine', OPTIONAL)
def test_missing_engine_package_says_what_to_install(dla34, monkeypatch, engine):
    monkeypatch.setitem(sys.modules, engine, None)  # `import engine` raises ImportError
    with pytest.raises(EngineUnavailable) as info:
        Predictor(dla34.prefix, engine=engine)
    message = str(info.value)
    assert 'not installed' in message and ENGINE_EXTRAS[engine] in message
    assert f'pip install {engine} paddle2onnx' in message


def test_a_failed_translation_is_explained_by_its_error_not_by_a_warning():
    """paddle2onnx's own words, as a translation that fails prints them, followed by the
    warning Paddle prints when it loads (whose last line used to stand as the reason)."""
    output = ('[Paddle2ONNX] Start parsing the Paddle model file...\n'
              '[ERROR] Due to the unsupported operators, the conversion is aborted.\n'
              '/venv/paddle/utils/cpp_extension/extension_utils.py:712: UserWarning: No ccache '
              'found.\n  warnings.warn(warning_message)\n')
    assert runtimes.last_words(output) == ('[ERROR] Due to the unsupported operators, the '
                                           'conversion is aborted.')
    assert runtimes.last_words('Segmentation fault\n') == 'Segmentation fault'
    # an exception ends the story, whatever an earlier line said
    raised = ('[Paddle2ONNX] Failed to fold a constant, kept it\nTraceback (most recent call '
              'last):\n  File "<string>", line 3, in <module>\nException: unsupported op '
              'deformable_conv_v1\n')
    assert runtimes.last_words(raised) == 'Exception: unsupported op deformable_conv_v1'
    assert runtimes.last_words('') == 'no output'


def test_missing_paddle2onnx(dla34, home, monkeypatch):
    pytest.importorskip('onnxruntime')
    monkeypatch.setitem(sys.modules, 'paddle2onnx', None)
    with pytest.raises(EngineUnavailable, match='the ONNX route needs paddle2onnx: '
                                                'pip install paddle2onnx'):
        Predictor(dla34.prefix, engine='onnxruntime')
    # 'auto' reports the engines it could not open, and runs with the others.
    predictor = Predictor(dla34.prefix)
    assert_parity(predictor(dla34.x()), dla34.reference[dla34.first])
    unopened = {'onnxruntime'} | ({'openvino'} if importlib.util.find_spec('openvino') and
                                  needs_onnx_route(dla34.model_file) else set())
    assert set(predictor.choice['unavailable']) == unopened
    assert all('paddle2onnx' in why for why in predictor.choice['unavailable'].values())
    assert not (set(predictor.choice['images_per_s']) & unopened)
    assert not translations(home)


# --- 4. the ONNX translation, cached by content -------------------------------------------

def copy_export(source, prefix):
    """The files of the export at ``source`` written at ``prefix`` (over any there)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    for suffix in (*MODEL_SUFFIXES, PARAMS_SUFFIX, META_SUFFIX):
        if os.path.isfile(source + suffix):
            shutil.copy(source + suffix, prefix + suffix)


@pytest.mark.full
def test_onnx_translation_is_cached_by_content(dla34, home, tmp_path, monkeypatch):
    pytest.importorskip('onnxruntime')
    pytest.importorskip('paddle2onnx')
    prefix = str(tmp_path / 'served' / 'model')
    copy_export(dla34.prefix, prefix)
    x, good = dla34.x(), dla34.reference[dla34.first]

    assert_parity(Predictor(prefix, engine='onnxruntime')(x), good)
    (translation,) = translations(home)

    def no_translation(model_file, *args):  # any new translation is refused from here on
        raise runtimes.EngineUnavailable(f'paddle2onnx could not translate {model_file}: '
                                         f'refused by the test')
    translate = runtimes._translate
    monkeypatch.setattr(runtimes, '_translate', no_translation)
    assert_parity(Predictor(prefix, engine='onnxruntime')(x), good)  # no second translation
    if importlib.util.find_spec('openvino'):  # OpenVINO reads the same translation
        assert_parity(Predictor(prefix, engine='openvino')(x), good)
    assert translations(home) == [translation]

    # New weights under the same graph file, as exporting other weights to the same prefix
    # from a fresh process writes them (within one process Paddle numbers the parameter
    # names on, so the graph file differs too): only the classifier's bias moves, by delta,
    # so the logits must move by exactly delta.
    bias = dla34.model.fc.bias.numpy()
    delta = np.random.default_rng(7).normal(0.0, 5.0, bias.shape)
    params = open(prefix + PARAMS_SUFFIX, 'rb').read()
    assert params.count(bias.tobytes()) == 1
    with open(prefix + PARAMS_SUFFIX, 'wb') as f:
        f.write(params.replace(bias.tobytes(), (bias + delta).astype('float32').tobytes()))
    with pytest.raises(EngineUnavailable, match='paddle2onnx could not translate'):
        Predictor(prefix, engine='onnxruntime')  # the old translation is not used
    monkeypatch.setattr(runtimes, '_translate', translate)
    moved = Predictor(prefix, engine='onnxruntime')(x)
    assert_parity(moved, good + delta)
    assert relative_error(moved, good) > MISTAKE
    assert len(translations(home)) == 2 and translation in translations(home)

    # Another model exported to the same prefix (the damaged one): a third translation.
    copy_export(dla34.damaged_prefix, prefix)
    served = Predictor(prefix, engine='onnxruntime')(x)
    assert_parity(served, dla34.damaged_reference)
    assert relative_error(served, good) > MISTAKE
    assert len(translations(home)) == 3


# --- 5. compile_model ---------------------------------------------------------------------

def _state(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _modes(model):
    return [layer.training for layer in [model, *model.sublayers()]]


def test_compile_model_exports_once_and_leaves_the_model_eager(home, monkeypatch):
    model = calibrated('dla_46_c')
    x = random_images((2, 3, 224, 224))
    reference = run_paddle(model, x)
    before = _state(model)

    compiled = compile_model(model)  # in eval mode
    assert _modes(model) == [False] * len(_modes(model))
    assert_parity(compiled(x.astype('float32')), reference)
    assert compiled.choice is not None and compiled.engine == compiled.choice['engine']
    exports = home / 'compiled' / 'exports'
    (folder,) = exports.iterdir()
    assert folder.name.startswith('dla_46_c-') and folder.name.endswith('-Nx3x224x224')

    model.train()  # in train mode: still the same export, and the mode is kept
    monkeypatch.setattr(inference, 'export', refuse)
    again = compile_model(model)
    assert list(exports.iterdir()) == [folder]
    assert _modes(model) == [True] * len(_modes(model))
    assert again.engine == compiled.engine and again.choice == compiled.choice
    assert_parity(again(x.astype('float32')), reference)

    # The model is as it was: same weights and statistics, eager forward, and it trains.
    after = _state(model)
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)
    assert not hasattr(model.forward, 'concrete_program')
    train_step(model, x)
    assert not np.array_equal(model.fc.weight.numpy(), before['fc.weight'])


def train_step(model, x):
    optimizer = paddle.optimizer.SGD(learning_rate=0.05, parameters=model.parameters())
    loss = paddle.nn.functional.cross_entropy(
        model(paddle.to_tensor(x.astype('float32'))), paddle.to_tensor([[1]] * len(x)))
    loss.backward()
    optimizer.step()


@pytest.mark.full
def test_compile_model_new_weights_new_export(home):
    model = calibrated('dla_46_c')
    x = random_images((1, 3, 224, 224))
    first = compile_model(model, engine='paddle')
    model.train()
    train_step(model, x)
    model.eval()
    reference = run_paddle(model, x)
    assert relative_error(first(x.astype('float32')), reference) > TOL  # the weights moved
    trained = compile_model(model, engine='paddle')
    assert len(list((home / 'compiled' / 'exports').iterdir())) == 2
    assert_parity(trained(x.astype('float32')), reference)


@pytest.mark.full
def test_compile_model_non_square_and_explicit_engine(home):
    model = calibrated('dla_46_c', seed=2)
    x = random_images((1, 3, 160, 224), seed=3)
    compiled = compile_model(model, input_shape=(None, 3, 160, 224), engine='paddle')
    assert compiled.engine == 'paddle' and compiled.choice is None
    assert_parity(compiled(x.astype('float32')), run_paddle(model, x))
    (folder,) = (home / 'compiled' / 'exports').iterdir()
    assert folder.name.endswith('-Nx3x160x224')
    assert not choices_file(home).exists()
    with pytest.raises(ValueError, match=r'expected input of shape \[N, 3, 160, 224\]'):
        compiled(random_images((1, 3, 224, 224)).astype('float32'))


# --- 6. the command line ------------------------------------------------------------------

def test_eval_help_lists_the_engines_and_the_default():
    proc = run_module('eval', '--help')
    assert proc.returncode == 0, proc.stderr
    text = ' '.join(proc.stdout.split())
    choices = '{' + ','.join(ENGINE_CHOICES) + ',eager'
    assert text.count('--engine ' + choices) == 2  # usage and the option's help
    engine_help = text.split('--engine ' + choices)[2].split(' --threads ')[0]
    assert '(default: auto)' in engine_help
    assert all(name in engine_help for name in (*ENGINE_CHOICES, 'eager'))
    assert '--threads THREADS' in text


EVAL_VARIANT = 'dla_46_c'
PHOTOS = ['astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png',
          'hubble_deep_field.jpg', 'retina.jpg', 'ihc.png', 'brick.png', 'grass.png']
TARGET_RANKS = (1, 3, 8)


def _labelled_photos(root, model):
    """Photographs in synset folders, each labelled with the class the eager model ranks
    1st, 3rd or 8th (rotating): the expected top-1 and top-5 are known exactly."""
    from paddle_dla.evaluation.transforms import Preprocess
    from paddle_dla.models.imagenet import synsets
    from paddle_dla.weights.registry import get_weights
    from PIL import Image

    preprocess = Preprocess.of(get_weights(EVAL_VARIANT).preprocessing)
    photos = [p for p in PHOTOS if os.path.exists(os.path.join(skimage.data_dir, p))]
    ranks = []
    for i, photo in enumerate(photos):
        path = root / 'flat' / f'ILSVRC2012_val_{i + 1:08d}.JPEG'
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(os.path.join(skimage.data_dir, photo)).convert('RGB').save(path, 'JPEG')
        logits = run_paddle(model, preprocess(str(path))[None])[0]
        picked = pick_label(logits, TARGET_RANKS[i % 3:] + TARGET_RANKS[:i % 3])
        if picked is None:
            continue
        label, rank = picked
        folder = root / 'synsets' / synsets()[label]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
        ranks.append(rank)
    return root / 'synsets', ranks


@pytest.mark.full
def test_eval_default_engine_scores_as_eager(tmp_path, home):
    model = calibrated(EVAL_VARIANT)
    weights = tmp_path / f'{EVAL_VARIANT}.pdparams'
    save_pdparams(model.state_dict(), weights)
    data, ranks = _labelled_photos(tmp_path / 'val', model)
    n = len(ranks)
    assert n >= 6 and 0 < sum(r == 1 for r in ranks) < sum(r <= 5 for r in ranks) < n
    expected = {'num_images': n, 'top1': round(100.0 * sum(r == 1 for r in ranks) / n, 3),
                'top5': round(100.0 * sum(r <= 5 for r in ranks) / n, 3)}
    threads = os.cpu_count()
    for engine in ('auto', 'eager'):
        results = tmp_path / f'{engine}.json'
        extra = [] if engine == 'auto' else ['--engine', engine]
        proc = subprocess.run(
            [sys.executable, '-m', 'paddle_dla', 'eval', '--model', EVAL_VARIANT, '--weights',
             str(weights), '--data-dir', str(data), '--batch-size', '4', '--workers', '0',
             '--no-progress', '--results-file', str(results), *extra],
            capture_output=True, text=True, cwd=REPO, timeout=600,
            env=child_env(PADDLE_DLA_HOME=str(home)))
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(results.read_text())
        assert {k: row[k] for k in expected} == expected, (engine, row)
        if engine == 'auto':  # exported, measured and remembered in $PADDLE_DLA_HOME
            (choice,) = json.loads(choices_file(home).read_text()).values()
            assert choice['engine'] in ENGINES
            assert len(list((home / 'compiled' / 'exports').iterdir())) == 1
            label = f'{choice["engine"]} (auto)'
        else:  # the eager model: nothing more exported
            assert len(list((home / 'compiled' / 'exports').iterdir())) == 1
            label = 'eager'
        assert row['engine'].startswith(label), row['engine']
        assert (engine == 'auto') == ('(auto)' in row['engine']), row['engine']
        # The first line of the table names the engine, and how the CPU was shared.
        first = next(line for line in proc.stdout.splitlines()
                     if line.startswith(EVAL_VARIANT))
        assert first.startswith(f'{EVAL_VARIANT} (custom weights, {label}'), first
        assert f'{threads} model threads' in first and '0 decoding workers' in first, first
        assert f'{n} images' in first, first
