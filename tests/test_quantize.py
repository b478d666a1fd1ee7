"""``paddle-dla quantize`` and the INT8 exports it writes.

The accuracy bound is the anchor the issue sets: the INT8 logits' relative RMS error against
the float export, on photographs not used for calibration, no larger than that of NNCF's
own post-training quantization (its defaults, written here from NNCF's documented API) of
the same model on the same calibration inputs. The model has random weights whose
BatchNorm statistics are re-estimated on the calibration photographs, so that its
activations have the scale trained weights give them on photographs.
"""
import os
import shutil

import numpy as np
import paddle
import pytest
import skimage
from PIL import Image

import paddle_dla
from paddle_dla.evaluation.transforms import Preprocess
from paddle_dla.inference import Predictor, export
from paddle_dla.inference.exported import INT8_FILES, ExportedModelError, ModelFileError
from paddle_dla.inference.runtimes import importable, onnx_model
from paddle_dla.models.layers import BN_MOMENTUM
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.weights.registry import get_weights
from helpers import top1_agreement
from hostile import assert_refused, run_module, run_python

pytestmark = pytest.mark.skipif(
    not all(importable(m) for m in ('nncf', 'openvino', 'paddle2onnx')),
    reason='INT8 needs nncf, openvino and paddle2onnx')

VARIANT = 'dla_46_c'
CALIBRATION_PHOTOS = 16


def relative_rms(ours, reference):
    return float(np.sqrt(np.mean((ours - reference) ** 2)) / np.sqrt(np.mean(reference ** 2)))


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """skimage's photographs as JPEG files: the first ``CALIBRATION_PHOTOS`` in ``calib/``,
    the rest (and their mirror images) held out."""
    root = tmp_path_factory.mktemp('photos')
    names = sorted(n for n in os.listdir(skimage.data_dir) if n.endswith(('.png', '.jpg')))
    pictures = []
    for name in names:
        try:
            pictures.append(Image.open(os.path.join(skimage.data_dir, name)).convert('RGB'))
        except OSError:
            continue
    assert len(pictures) >= CALIBRATION_PHOTOS + 6
    (root / 'calib').mkdir()
    (root / 'held').mkdir()
    for i, picture in enumerate(pictures):
        held = i >= CALIBRATION_PHOTOS
        picture.save(root / ('held' if held else 'calib') / f'{i:02d}.jpg')
        if held:
            picture.transpose(Image.FLIP_LEFT_RIGHT).save(root / 'held' / f'{i:02d}m.jpg')
    return root


def _inputs(folder):
    preprocess = Preprocess.of(get_weights(VARIANT).preprocessing)
    return np.stack([preprocess(str(folder / f)) for f in sorted(os.listdir(folder))])


@pytest.fixture(scope='module')
def weights(photos, tmp_path_factory):
    """Random weights with BatchNorm statistics of the calibration photographs."""
    paddle.seed(0)
    model = paddle_dla.create_model(VARIANT)
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for bn in bns:
        bn._momentum = 0.0
    model.train()
    with paddle.no_grad():
        model(paddle.to_tensor(_inputs(photos / 'calib')))
    for bn in bns:
        bn._momentum = BN_MOMENTUM
    path = tmp_path_factory.mktemp('weights') / f'{VARIANT}.pdparams'
    save_pdparams(model.state_dict(), path)
    return path


@pytest.fixture(scope='module')
def quantized(photos, weights, tmp_path_factory):
    """The command's output folder, and its float export."""
    out = tmp_path_factory.mktemp('int8') / 'out'
    home = tmp_path_factory.mktemp('home')
    proc = run_module('quantize', '--model', VARIANT, '--weights', weights, '--calib-dir',
                      photos / 'calib', '--out', out, timeout=600,
                      env={'PADDLE_DLA_HOME': str(home)}, memory=16 << 30)
    assert proc.returncode == 0, proc.stderr
    assert f'calibrating {VARIANT} on {CALIBRATION_PHOTOS} images' in proc.stdout
    assert 'No CUDA runtime' not in proc.stderr  # torch's note when NNCF loads it: not ours
    return out


def _nncf_default(onnx_file, calibration, out_file):
    """NNCF's post-training quantization with its defaults, saved as an OpenVINO IR."""
    import nncf
    import openvino as ov
    model = nncf.quantize(ov.Core().read_model(onnx_file),
                          nncf.Dataset([x[None] for x in calibration]),
                          subset_size=len(calibration))
    ov.save_model(model, out_file, compress_to_fp16=False)


def test_int8_is_as_accurate_as_nncf_defaults(photos, quantized, tmp_path):
    held = _inputs(photos / 'held')
    int8 = Predictor(quantized)
    assert (int8.engine, int8.precision) == ('openvino', 'int8')
    fp32 = Predictor(quantized, precision='fp32', engine='paddle')
    reference = np.concatenate([fp32(held[i:i + 4]) for i in range(0, len(held), 4)])
    ours = np.concatenate([int8(held[i:i + 4]) for i in range(0, len(held), 4)])

    # The anchor: NNCF's defaults on the same ONNX translation and calibration inputs, run
    # by OpenVINO as our INT8 model is (the same files, so only the quantization differs).
    anchor = tmp_path / 'anchor'
    shutil.copytree(quantized, anchor)
    prefix = str(anchor / VARIANT)
    _nncf_default(onnx_model(prefix, prefix + '.json' if os.path.exists(prefix + '.json')
                             else prefix + '.pdmodel'),
                  _inputs(photos / 'calib'), prefix + INT8_FILES['openvino'][0])
    theirs = np.concatenate([Predictor(anchor)(held[i:i + 4]) for i in range(0, len(held), 4)])

    ours_error, anchor_error = relative_rms(ours, reference), relative_rms(theirs, reference)
    agreeing, decided = top1_agreement(ours, reference, 0.01)
    print(f'INT8 relative RMS error {ours_error:.4f} (NNCF defaults {anchor_error:.4f}); '
          f'top-1 agrees on {agreeing} of {decided} held-out photographs')
    assert 0 < ours_error <= anchor_error


@pytest.mark.full
def test_a_wrong_calibration_fails_the_bound(photos, quantized, tmp_path):
    """Calibrated on blank inputs (the ranges of nothing), the logits are mostly noise: a
    relative error near 1, over twice the real calibration's. (A relative RMS error cannot
    exceed ~1 much, so no mistake can fail this bound by orders of magnitude.)"""
    from paddle_dla.inference.quantize import quantize_export
    held = _inputs(photos / 'held')
    fp32 = Predictor(quantized, precision='fp32', engine='paddle')(held)
    good = relative_rms(Predictor(quantized)(held), fp32)
    blank = [np.zeros((1, 3, 224, 224), np.float32)] * 16
    quantize_export(os.path.join(quantized, VARIANT), tmp_path / 'blank' / VARIANT, blank)
    bad = relative_rms(Predictor(tmp_path / 'blank')(held), fp32)
    assert bad > 0.8 and bad > 2 * good, (bad, good)


@pytest.mark.full  # a quantization of its own: the fast tier keeps under five minutes
def test_calibration_images_are_read_one_at_a_time(photos, quantized, tmp_path):
    """The command's calibration set prepares each image when NNCF reads it: however many
    images, memory holds a few at a time (all 16 here if they were held together), and the
    INT8 model is cached by the same digest as the inputs held in a list."""
    import weakref

    from paddle_dla.cli.quantize import calibration_files, calibration_inputs
    from paddle_dla.inference.quantize import calibration_digest, quantize_export
    preprocess = Preprocess.of(get_weights(VARIANT).preprocessing)
    alive, most = [0], [0]

    def prepare(path):
        array = preprocess(path)[None]
        alive[0] += 1
        most[0] = max(most[0], alive[0])
        weakref.finalize(array, lambda: alive.__setitem__(0, alive[0] - 1))
        return array
    files = calibration_files(str(photos / 'calib'), 300)
    images = calibration_inputs(files, prepare)
    assert len(images) == CALIBRATION_PHOTOS and most[0] <= 2, most
    assert calibration_digest(images) == calibration_digest([preprocess(f)[None] for f in files])
    written = quantize_export(os.path.join(quantized, VARIANT), tmp_path / 'again' / VARIANT,
                              images)
    assert any(f.endswith(INT8_FILES['openvino'][0]) for f in written)
    assert 1 <= most[0] <= 4, f'{most[0]} calibration inputs were held at once'


@pytest.mark.full  # the fast tier runs the INT8 export through Predictor in the test above
def test_predict_and_predictor_run_the_int8_export(photos, quantized, monkeypatch):
    proc = run_module('predict', photos / 'held' / '20.jpg', '--exported', quantized,
                      '--topk', '2')
    assert proc.returncode == 0, proc.stderr
    assert 'engine: openvino (auto: this INT8 model runs on openvino' in proc.stdout
    with pytest.raises(ValueError, match='this INT8 model runs on openvino, not paddle'):
        Predictor(quantized, precision='int8', engine='paddle')
    assert Predictor(quantized, engine='paddle').precision == 'fp32'
    # Without OpenVINO the export's float model runs, as it would for any export.
    from paddle_dla.inference import predictor
    monkeypatch.setattr(predictor, 'importable', lambda module: module != 'openvino')
    assert Predictor(quantized).precision == 'fp32'


def test_int8_asked_of_a_float_export_says_how_to_make_one(tmp_path):
    model = paddle_dla.create_model(VARIANT)
    export(model, tmp_path / 'fp32' / VARIANT)
    with pytest.raises(ExportedModelError, match='carries no INT8 model; make one with: '
                                                 'paddle-dla quantize'):
        Predictor(tmp_path / 'fp32', precision='int8')
    assert Predictor(tmp_path / 'fp32').precision == 'fp32'
    with pytest.raises(ValueError, match='int8 runs on CPU'):
        Predictor(tmp_path / 'fp32', device='gpu', precision='int8')


@pytest.mark.parametrize('case', ['missing', 'empty', 'too few', pytest.param(
    'unreadable', marks=pytest.mark.full)])  # the one that reads images: full
def test_bad_calibration_folder_is_refused_with_nothing_written(photos, weights, tmp_path,
                                                               case):
    calib = tmp_path / 'calib'
    if case != 'missing':
        calib.mkdir()
    if case == 'too few':
        for name in sorted(os.listdir(photos / 'calib'))[:3]:
            shutil.copy(photos / 'calib' / name, calib / name)
    if case == 'unreadable':
        for i in range(10):
            (calib / f'{i}.jpg').write_bytes(b'not a JPEG at all')
    out = tmp_path / 'out'
    proc = run_module('quantize', '--model', VARIANT, '--weights', weights, '--calib-dir',
                      calib, '--out', out, env={'PADDLE_DLA_HOME': str(tmp_path / 'home')})
    phrase = {'missing': 'not a folder', 'empty': 'holds no image',
              'too few': 'holds 3 images; INT8 calibration needs at least 8',
              'unreadable': '0 readable;'}[case]
    assert_refused(proc, str(calib), phrase, absent=[out])
    if case == 'unreadable':
        assert '10 of 10 images could not be read (first: ' in proc.stderr


def _damaged_copy(quantized, folder, change):
    """A copy of the INT8 export in ``folder``, changed by ``change(prefix, meta)`` (which
    edits the metadata dict in place or the files at ``prefix``)."""
    import json
    shutil.copytree(quantized, folder)
    prefix = folder / VARIANT
    meta_file = folder / f'{VARIANT}.dla.json'
    meta = json.loads(meta_file.read_text())
    change(prefix, meta)
    meta_file.write_text(json.dumps(meta))
    return folder


# A command, and what its one line must say: each stops before any work, writing nothing.
BAD_QUANTIZE = {
    'out is a file': (lambda q, t, c: ['quantize', '--exported', q, '--calib-dir', c,
                                    '--out', _touch(t / 'afile')], 'is a file, not a folder'),
    'too few to count': (lambda q, t, c: ['quantize', '--exported', q, '--calib-dir', c,
                                       '--calib-count', '3', '--out', t / 'out'],
                         '--calib-count: 3 is out of range: must be at least 8'),
    'no export there': (lambda q, t, c: ['quantize', '--exported', t / 'nothing', '--calib-dir',
                                      c, '--out', t / 'out'], 'no exported model at'),
    'size of an export': (lambda q, t, c: ['quantize', '--exported', q, '--img-size', '128',
                                        '--calib-dir', c, '--out', t / 'out'],
                          '--img-size is for --model'),
    'dense task without outputs': (
        lambda q, t, c: ['quantize', '--exported', _damaged_copy(
            q, t / 'lying', lambda p, m: m.update(task='detection')), '--calib-dir', c,
            '--out', t / 'out'], 'records task \'detection\' without what a dense network'),
    'int8 file missing': (
        lambda q, t, c: ['predict', c / '00.jpg', '--exported', _damaged_copy(
            q, t / 'nobin', lambda p, m: os.remove(f'{p}.int8.bin'))],
        'records an INT8 model, but'),
    'int8 engine not a name': (
        lambda q, t, c: ['predict', c / '00.jpg', '--exported', _damaged_copy(
            q, t / 'listed', lambda p, m: m['int8'].update(engine=['openvino']))],
        'is corrupt: unexpected int8'),
    'int8 record names no engine': (
        lambda q, t, c: ['predict', c / '00.jpg', '--exported', _damaged_copy(
            q, t / 'engine', lambda p, m: m['int8'].update(engine='tensorrt'))],
        'is corrupt: unexpected int8'),
    'too few images, several processes': (
        lambda q, t, c: ['eval', '--model', VARIANT, '--data-dir', c, '--precision', 'int8',
                         '--calib-dir', _few_images(c, t / 'few'), '--nproc', '2'],
        'holds 3 images; INT8 calibration needs at least 8'),
    'too few images to calibrate on in --data-dir, several processes': (
        lambda q, t, c: ['eval', '--model', VARIANT, '--data-dir', _few_images(c, t / 'few'),
                         '--precision', 'int8', '--nproc', '2'],
        ('--data-dir ', 'holds 3 images; INT8 calibration needs at least 8')),
    'int8 on another engine, several processes': (
        lambda q, t, c: ['eval', '--model', VARIANT, '--data-dir', c, '--precision', 'int8',
                         '--engine', 'onnxruntime', '--nproc', '2'],
        '--precision int8 runs on openvino, not --engine onnxruntime'),
    'calibration without int8': (
        lambda q, t, c: ['eval', '--model', VARIANT, '--data-dir', c, '--calib-dir', c],
        '--calib-dir is for --precision int8'),
}


@pytest.mark.full
def test_an_onnxruntime_int8_export_of_an_earlier_release_still_runs(photos, quantized,
                                                                     tmp_path):
    """Until 2026-12-07 a dense network's INT8 model was an ONNX model with
    quantize-dequantize pairs (NNCF's ONNX backend), recorded for onnxruntime: such an
    export still runs there, by default, as INT8."""
    import json

    import nncf
    import onnx
    if not importable('onnxruntime'):
        pytest.skip('needs onnxruntime')
    old = tmp_path / 'old'
    shutil.copytree(quantized, old)
    prefix = str(old / VARIANT)
    for suffix in INT8_FILES['openvino']:
        os.remove(prefix + suffix)
    model = onnx.load(onnx_model(prefix, prefix + '.json' if os.path.exists(prefix + '.json')
                                 else prefix + '.pdmodel'))
    name = model.graph.input[0].name
    calibration = _inputs(photos / 'calib')
    onnx.save(nncf.quantize(model, nncf.Dataset([x[None] for x in calibration],
                                                 lambda x: {name: x}),
                            subset_size=len(calibration)),
              prefix + INT8_FILES['onnxruntime'][0])
    meta_file = old / f'{VARIANT}.dla.json'
    meta = json.loads(meta_file.read_text())
    meta['int8'].update(engine='onnxruntime', tool='nncf, onnxruntime', options='nncf defaults')
    meta_file.write_text(json.dumps(meta))

    held = _inputs(photos / 'held')
    int8 = Predictor(old)
    assert (int8.engine, int8.precision) == ('onnxruntime', 'int8')
    fp32 = Predictor(quantized, precision='fp32', engine='paddle')(held)
    error = relative_rms(int8(held), fp32)
    assert 0 < error < 0.8, error  # INT8, and not noise (blank calibration: > 0.8, above)


@pytest.mark.full
def test_an_int8_export_missing_its_int8_files_still_runs_in_float_when_asked(quantized,
                                                                              tmp_path):
    """Only where the INT8 model would run (by default, or asked for) are its missing
    files an error; the float model it carries runs when asked for. The export is found
    by its metadata file's name too."""
    damaged = _damaged_copy(quantized, tmp_path / 'nobin',
                            lambda p, m: os.remove(f'{p}.int8.bin'))
    with pytest.raises(ModelFileError, match='records an INT8 model, but .*int8.bin is missing'):
        Predictor(damaged)
    with pytest.raises(ModelFileError, match='records an INT8 model'):
        Predictor(damaged, precision='int8')
    assert Predictor(damaged / f'{VARIANT}.dla.json', precision='fp32',
                     engine='paddle').precision == 'fp32'


def _few_images(source, folder):
    """A folder of three of ``source``'s images: too few to calibrate on."""
    folder.mkdir()
    for name in sorted(os.listdir(source))[:3]:
        shutil.copy(source / name, folder / name)
    return folder


def _touch(path):
    path.write_bytes(b'')
    return path


_WITHOUT_NNCF = ('import sys; sys.modules["nncf"] = None  # as if not installed\n'
                 'from paddle_dla.cli import main; sys.exit(main(sys.argv[1:]))')


@pytest.mark.parametrize('source', ['--model', '--exported'])
def test_quantize_without_nncf_says_what_to_install_before_reading_anything(tmp_path, source):
    """The missing library is named first: not after the weights are read, an export made
    or the calibration folder walked (here none of them exists)."""
    given = ['--model', VARIANT, '--weights', tmp_path / 'none.pdparams'] if source == '--model' \
        else ['--exported', tmp_path / 'no-export']
    proc = run_python(_WITHOUT_NNCF, 'quantize', *given, '--calib-dir', tmp_path / 'no-calib',
                      '--out', tmp_path / 'out')
    assert_refused(proc, 'INT8 needs nncf: pip install nncf openvino paddle2onnx',
                   absent=[tmp_path / 'out'])


@pytest.mark.full  # subprocesses on the INT8 export: the fast tier refuses bad folders above
@pytest.mark.parametrize('case', BAD_QUANTIZE)
def test_a_bad_int8_command_is_refused_in_one_line_before_any_work(quantized, photos, tmp_path,
                                                                   case):
    command, phrases = BAD_QUANTIZE[case]
    home = tmp_path / 'home'
    proc = run_module(*command(quantized, tmp_path, photos / 'calib'),
                      env={'PADDLE_DLA_HOME': str(home)})
    assert_refused(proc, *((phrases,) if isinstance(phrases, str) else phrases),
                   absent=[tmp_path / 'out', home / 'compiled'])


@pytest.mark.full
@pytest.mark.parametrize('nproc', [1, 2])
def test_eval_precision_int8_scores_what_the_int8_model_predicts(photos, weights, quantized,
                                                                 tmp_path, nproc):
    """Each held-out photograph labelled with the float model's top-1: eval --precision
    int8 (calibrated on the same images, so the same INT8 model) must score exactly the
    INT8 model's agreement with it, in one process or two (which share one INT8 model)."""
    import json

    from paddle_dla.models.imagenet import synsets
    held = sorted(os.listdir(photos / 'held'))
    inputs = _inputs(photos / 'held')
    fp32 = Predictor(quantized, precision='fp32', engine='paddle')(inputs).argmax(1)
    int8 = Predictor(quantized)(inputs).argmax(1)
    for i, (name, label) in enumerate(zip(held, fp32)):
        folder = tmp_path / 'val' / synsets()[label]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / 'held' / name, folder / f'ILSVRC2012_val_{i + 1:08d}.JPEG')
    results = tmp_path / 'results.json'
    proc = run_module('eval', '--model', VARIANT, '--weights', weights, '--data-dir',
                      tmp_path / 'val', '--precision', 'int8', '--calib-dir', photos / 'calib',
                      '--batch-size', '4', '--workers', '0', '--no-progress',
                      '--nproc', nproc, '--results-file', results, timeout=600,
                      env={'PADDLE_DLA_HOME': str(tmp_path / 'home')}, memory=16 << 30)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(results.read_text())
    assert row['engine'].startswith('openvino') and row['precision'] == 'int8', row
    assert row['num_images'] == len(held)
    assert row['top1'] == round(100.0 * np.mean(int8 == fp32), 3), row
    assert len(list((tmp_path / 'home').glob('**/*.int8.xml'))) == 1


# A process compiling a small model to INT8 that counts what it makes: export and
# quantization, each a line in a shared file. It starts compiling once both processes are
# ready, so that without the cache's lock both would find nothing and make everything.
COMPILING = '''
import os, sys, time
import numpy as np
import paddle
import paddle_dla
from paddle_dla.inference import predictor
log, me, other = sys.argv[1:4]

def counted(what, real):
    def call(*args, **kwargs):
        with open(log, 'a') as f:
            f.write(what + '\\n')
        return real(*args, **kwargs)
    return call

predictor.export = counted('export', predictor.export)
predictor.quantize_export = counted('quantize', predictor.quantize_export)
paddle.seed(0)
model = paddle_dla.create_model('dla_46_c', num_classes=10)
model.eval()
calibration = [np.random.default_rng(i).standard_normal((1, 3, 64, 64)).astype('float32')
               for i in range(8)]
open(me, 'w').close()
while not os.path.exists(other):
    time.sleep(0.05)
run = predictor.compile_model(model, (None, 3, 64, 64), precision='int8',
                              calibration=calibration)
print(run.engine, run.precision, run(calibration[0]).shape)
'''


@pytest.mark.full
def test_processes_compiling_one_model_at_once_make_it_once(tmp_path):
    """The ranks of ``eval --nproc N`` compile the same model at the same moment: one makes
    the export and the INT8 model, the other waits for it and reads them."""
    import subprocess
    import sys

    from helpers import child_env
    log = tmp_path / 'made.txt'
    env = child_env(PADDLE_DLA_HOME=str(tmp_path / 'home'))
    procs = [subprocess.Popen([sys.executable, '-c', COMPILING, str(log),
                               str(tmp_path / f'ready{i}'), str(tmp_path / f'ready{1 - i}')],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in (0, 1)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert out.split() == ['openvino', 'int8', '(1,', '10)'], out
    assert log.read_text().splitlines() == ['export', 'quantize']
    waited = [err for _, err in outputs if 'waiting for another process that is making' in err]
    assert len(waited) == 1, [err[-2000:] for _, err in outputs]
