"""The dense models as a user meets them: a PyTorch checkpoint in each layout converted by
``paddle-dla convert`` (a subprocess), loaded by name, held to the float32 parity standard
against the PyTorch reference; bad files refused in one line with nothing written; then
export, the Predictor's named outputs, and ``paddle-dla predict`` drawing on a photograph."""
import os
import re

import numpy as np
import paddle
import pytest
import skimage
from PIL import Image

import paddle_dla
torch = pytest.importorskip('torch')  # marked torch: skipped whole without PyTorch
pytest.importorskip('torchvision')
pytest.importorskip('timm')
from dense_reference import (CENTERNET_HEADS, FAIRMOT_HEADS, centernet_reference,
                             official_dense_state, save_centernet_checkpoint,
                             save_segmentation_checkpoint, segmentation_reference)
from helpers import FLOAT32_LIMIT, relative_error, top1_agrees
from hostile import Payload, assert_refused, leftovers, run_module, run_python

pytestmark = pytest.mark.torch

FLOAT32_TOLERANCE = FLOAT32_LIMIT
SIZES = [(64, 96), (96, 96)]
PHOTO = os.path.join(skimage.data_dir, 'chelsea.png')   # 451 x 300: letterboxed


def _images(height, width, seed=5):
    return torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@torch.no_grad()
def _reference(model, images):
    out = model(images)
    return ({k: v.numpy() for k, v in out.items()} if isinstance(out, dict)
            else {'logprobs': out[0].numpy()})


def _ours(model, images):
    with paddle.no_grad():
        out = model(paddle.to_tensor(images.numpy().astype('float32')))
    return ({k: v.numpy() for k, v in out.items()} if isinstance(out, dict)
            else {'logprobs': out.numpy()})


def _assert_float32_parity(model, reference):
    for height, width in SIZES:
        images = _images(height, width)
        ours, ref = _ours(model, images), _reference(reference, images)
        errors = {k: relative_error(ours[k], ref[k]) for k in ref}
        assert max(errors.values()) <= FLOAT32_TOLERANCE, (height, width, errors)
        if 'logprobs' in ref:  # every pixel's class where the reference is clear
            pixels = [np.moveaxis(m, 1, -1).reshape(-1, m.shape[1])
                      for m in (ours['logprobs'], ref['logprobs'])]
            assert top1_agrees(*pixels)


def _convert(src, *extra):
    dst = str(src).rsplit('.', 1)[0] + '.pdparams'
    proc = run_module('convert', '--src', src, '--dst', dst, *extra)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == '', proc.stderr
    return dst, proc.stdout


LAYOUTS = [
    pytest.param('centernet', {}, id='centernet'),
    pytest.param('centernet', {'module_prefix': True}, id='centernet-module',
                 marks=pytest.mark.full),
    pytest.param('centernet', {'with_optimizer': True, 'module_prefix': True},
                 id='centernet-optimizer', marks=pytest.mark.full),
    pytest.param('fairmot', {'module_prefix': True, 'epoch': 30}, id='fairmot',
                 marks=pytest.mark.full),
]


@pytest.mark.parametrize('family,layout', LAYOUTS)
def test_centernet_checkpoint_converted_by_the_command_matches_pytorch(tmp_path, family, layout):
    heads = dict(CENTERNET_HEADS if family == 'centernet' else FAIRMOT_HEADS)
    reference = centernet_reference(heads)
    src = tmp_path / f'{family}.pth'
    save_centernet_checkpoint(reference, src, **layout)
    dst, out = _convert(src)
    name = 'CenterNet' if family == 'centernet' else 'FairMOT'
    shown = ' / '.join(f'{h} {c}' for h, c in heads.items())
    epoch = layout.get('epoch', 140)
    assert f'{name} DLA-34, heads {shown}, epoch {epoch}' in out, out
    assert 'dropped 2 base.fc tensors' in out and '10 dead project tensors' in out, out
    model = paddle_dla.create_model(f'{family}_dla34', pretrained=dst)
    model.eval()
    assert model.heads == heads
    _assert_float32_parity(model, reference)


@pytest.mark.parametrize('name,timm_name,backbone', [
    # the fast tier converts a CenterNet checkpoint by the command above
    pytest.param('dla34up', 'dla34', 'dla_34', marks=pytest.mark.full),
    pytest.param('dla60up', 'dla60', 'dla_60', marks=pytest.mark.full),
    pytest.param('dla102up', 'dla102', 'dla_102', marks=pytest.mark.full),
    pytest.param('dla169up', 'dla169', 'dla_169', marks=pytest.mark.full)])
def test_segmentation_checkpoint_converted_by_the_command_matches_pytorch(
        tmp_path, name, timm_name, backbone):
    reference = segmentation_reference(timm_name)
    src = tmp_path / f'{name}.pth'
    save_segmentation_checkpoint(reference, src, arch=name, backbone=backbone)
    dst, out = _convert(src)
    assert re.search(rf'DLA-Up segmentation DLA-\d+ \({name}\), 19 classes, epoch 3', out), out
    model = paddle_dla.create_model(name, pretrained=dst)
    model.eval()
    _assert_float32_parity(model, reference)
    # the .pth itself loads by name too, converted in memory, to the same weights
    direct = paddle_dla.create_model(name, pretrained=str(src))
    same = [np.array_equal(a.numpy(), b.numpy())
            for a, b in zip(direct.state_dict().values(), model.state_dict().values())]
    assert all(same)


# --- bad files: one line naming the file, nothing written -----------------------------------

def test_a_checkpoint_missing_a_neck_key_is_refused_naming_it(tmp_path):
    reference = centernet_reference(CENTERNET_HEADS)
    state = official_dense_state(reference, 'dla_34')
    del state['ida_up.node_2.conv.conv_offset_mask.weight']
    src, dst = tmp_path / 'broken.pth', tmp_path / 'broken.pdparams'
    torch.save({'epoch': 1, 'state_dict': state}, src)
    proc = run_module('convert', '--src', src, '--dst', dst)
    assert_refused(proc, 'broken.pth', 'ida_up.node_2.conv.conv_offset_mask.weight',
                   absent=[dst])
    assert leftovers(tmp_path) == [str(src)]


@pytest.mark.full
def test_a_truncated_dense_checkpoint_and_verify_are_refused(tmp_path):
    reference = segmentation_reference('dla34')
    src = tmp_path / 'seg.pth'
    save_segmentation_checkpoint(reference, src)
    proc = run_module('convert', '--src', src, '--verify')
    assert_refused(proc, '--verify', 'nothing was written', absent=[tmp_path / 'seg.pdparams'])
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(src.read_bytes()[:len(src.read_bytes()) // 2])
    proc = run_module('convert', '--src', cut)
    assert_refused(proc, 'cut.pth', absent=[tmp_path / 'cut.pdparams'])


@pytest.mark.full
def test_code_in_a_dense_checkpoint_never_runs(tmp_path):
    """A CenterNet-style wrapper whose state dict carries a payload: refused by the command
    and by create_model, the marker never made."""
    marker, src = tmp_path / 'pwned', tmp_path / 'evil.pth'
    state = official_dense_state(centernet_reference(CENTERNET_HEADS), 'dla_34')
    torch.save({'epoch': 140, 'state_dict': {**state, 'trap': Payload(marker)}}, src)
    proc = run_module('convert', '--src', src, '--model', 'centernet_dla34',
                      '--dst', tmp_path / 'o.pdparams')
    assert_refused(proc, 'evil.pth', 'could run code', absent=[tmp_path / 'o.pdparams', marker])
    proc = run_python('import sys, paddle_dla; '
                      'paddle_dla.create_model("centernet_dla34", pretrained=sys.argv[1])', src)
    assert proc.returncode != 0 and 'could run code' in proc.stderr and not marker.exists()


@pytest.mark.full
def test_another_models_checkpoint_is_refused_by_name(tmp_path):
    src = tmp_path / 'seg.pth'
    save_segmentation_checkpoint(segmentation_reference('dla34'), src)
    proc = run_module('convert', '--src', src, '--model', 'centernet_dla34',
                      '--dst', tmp_path / 'x.pdparams')
    assert_refused(proc, 'seg.pth', 'dla34up', absent=[tmp_path / 'x.pdparams'])


def _tampered(how):
    """An official-layout state, changed as ``how`` says, and the phrase refusing it."""
    if how in ('lying arch', 'another down ratio'):
        state = official_dense_state(segmentation_reference('dla34'), 'dla_34')
        if how == 'another down ratio':  # segment.py --down 4: fc.0 reads the 64-channel level
            state['fc.0.weight'] = torch.zeros(19, 64, 1, 1)
            return state, 'trained with --down 4'
        return {'epoch': 1, 'arch': 'dla60up', 'state_dict': state}, 'says arch dla60up'
    state = official_dense_state(centernet_reference(CENTERNET_HEADS), 'dla_34')
    if how == 'extra key under base.fc':
        state['base.fc.evil'] = torch.zeros(3)
        return state, 'base.fc.evil'
    if how == 'head named after a method':
        for leaf in ('0.weight', '0.bias', '2.weight', '2.bias'):
            state[f'state_dict.{leaf}'] = state.pop(f'reg.{leaf}')
        return state, "'state_dict' is taken by the network"
    raise ValueError(how)


@pytest.mark.parametrize('how', ['extra key under base.fc', 'head named after a method',
                                 'lying arch', 'another down ratio'])
def test_what_the_dense_converter_refuses(how):
    from paddle_dla.weights.convert.dense import convert_dense_state
    from paddle_dla.core.errors import PaddleDLAError
    raw, phrase = _tampered(how)
    with pytest.raises(PaddleDLAError, match='tampered.pth'):
        convert_dense_state(raw, 'tampered.pth')
    with pytest.raises(PaddleDLAError) as err:
        convert_dense_state(raw, 'tampered.pth')
    assert phrase in str(err.value), str(err.value)


@pytest.mark.full
def test_a_pdparams_of_the_other_family_is_refused_by_name(tmp_path):
    from paddle_dla.weights.checkpoint import save_pdparams
    from paddle_dla.weights.convert.dense import convert_dense_state
    fairmot = convert_dense_state(official_dense_state(centernet_reference(FAIRMOT_HEADS),
                                                       'dla_34'))
    path = tmp_path / 'fairmot.pdparams'
    save_pdparams(fairmot.state, path)
    with pytest.raises(paddle_dla.StateDictMismatch, match='is a fairmot_dla34 checkpoint'):
        paddle_dla.create_model('centernet_dla34', pretrained=str(path))
    assert paddle_dla.create_model('fairmot_dla34', pretrained=str(path)).heads == FAIRMOT_HEADS


# --- export, Predictor and predict -----------------------------------------------------------

@pytest.fixture(scope='module')
def centernet_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp('centernet')
    src = folder / 'ctdet.pth'
    save_centernet_checkpoint(centernet_reference(CENTERNET_HEADS), src)
    return _convert(src)[0]


def _exported_centernet_gives_every_head_by_name(tmp_path, weights, engine):
    """Returns the largest relative error of a head, and how to measure another engine's."""
    from paddle_dla.inference import Predictor, export
    model = paddle_dla.create_model('centernet_dla34', pretrained=weights)
    model.eval()
    files = export(model, tmp_path / 'cn', (None, 3, 64, 96))
    assert len(files) == 3
    images = _images(64, 96)
    eager = _ours(model, images)

    def error(predictor):
        got = predictor(images.numpy().astype('float32'))
        assert list(got) == ['hm', 'wh', 'reg']
        return max(relative_error(got[head], eager[head]) for head in eager)
    predictor = Predictor(tmp_path / 'cn', engine=engine)
    assert error(predictor) <= FLOAT32_TOLERANCE
    assert predictor.meta['task'] == 'detection' and predictor.meta['stride'] == 4
    assert len(predictor.meta['class_names']) == 80
    return error(predictor), lambda **kw: error(Predictor(tmp_path / 'cn', engine=engine, **kw))


@pytest.mark.full  # export itself runs in the fast tier through the command below
@pytest.mark.paddle_compat
def test_exported_centernet_gives_every_head_by_name(tmp_path, centernet_weights):
    _exported_centernet_gives_every_head_by_name(tmp_path, centernet_weights, 'paddle')


@pytest.mark.full
def test_centernet_on_onnxruntime_gives_every_head_by_name(tmp_path, centernet_weights):
    """paddle2onnx translates the deformable convolutions to ONNX ``DeformConv``."""
    _exported_centernet_gives_every_head_by_name(tmp_path, centernet_weights, 'onnxruntime')


@pytest.mark.full  # the fast tier holds the reading to ONNX's specification (test_openvino_reader)
def test_centernet_on_openvino_gives_every_head_by_name(tmp_path, centernet_weights,
                                                       monkeypatch):
    """OpenVINO reads the translated ``DeformConv`` as its own DeformableConvolution; the
    (dy, dx) pairs read in the reverse order, or the border taps' bilinear padding unset,
    fail by orders of magnitude."""
    pytest.importorskip('openvino')
    from paddle_dla.inference.openvino_reader import opset
    ops = opset()
    error, again = _exported_centernet_gives_every_head_by_name(tmp_path, centernet_weights,
                                                                'openvino')
    real = ops.deformable_convolution

    def pairs_reversed(data, offsets, *args, **kwargs):
        taps = offsets.get_partial_shape()[1].get_length()
        swap = ops.constant(np.arange(taps) ^ 1, np.int64)
        return real(data, ops.gather(offsets, swap, ops.constant(1, np.int64)), *args,
                    **kwargs)

    def no_border_padding(*args, **kwargs):
        return real(*args, **dict(kwargs, bilinear_interpolation_pad=False))
    for mistake in (pairs_reversed, no_border_padding):
        monkeypatch.setattr(ops, 'deformable_convolution', mistake)
        wrong = again()
        print(f'{mistake.__name__}: {wrong:.1e} (right: {error:.1e})')
        assert wrong > 100 * max(error, FLOAT32_TOLERANCE / 100), mistake.__name__


@pytest.mark.full
def test_export_then_predict_draws_detections_on_a_photograph(tmp_path, centernet_weights):
    out_dir = tmp_path / 'drawn'
    proc = run_module('export', '--model', 'centernet_dla34', '--weights', centernet_weights,
                      '--img-size', 128, '--out', tmp_path / 'exported')
    assert proc.returncode == 0, proc.stderr
    assert 'outputs hm, wh, reg' in proc.stdout
    proc = run_module('predict', PHOTO, '--exported', tmp_path / 'exported', '--out-dir',
                      out_dir, '--threshold', '0.05', '--engine', 'paddle')  # auto: elsewhere
    assert proc.returncode == 0, proc.stderr
    assert re.search(r'\d+ detections scoring >= 0.05', proc.stdout), proc.stdout
    drawn = Image.open(out_dir / 'chelsea.png')
    assert drawn.size == Image.open(PHOTO).size and drawn.format == 'PNG'


@pytest.mark.full
def test_predict_segments_a_photograph_with_a_pytorch_checkpoint(tmp_path):
    src = tmp_path / 'seg.pth'
    save_segmentation_checkpoint(segmentation_reference('dla34'), src)
    out_dir = tmp_path / 'masks'
    proc = run_module('predict', PHOTO, '--model', 'dla34up', '--weights', src, '--engine',
                      'eager', '--out-dir', out_dir)
    assert proc.returncode == 0, proc.stderr
    assert '% of pixels' in proc.stdout, proc.stdout
    assert Image.open(out_dir / 'chelsea.png').size == Image.open(PHOTO).size


def test_predict_never_draws_over_an_input_image(tmp_path, centernet_weights):
    image = tmp_path / 'frame.png'
    image.write_bytes(open(PHOTO, 'rb').read())
    before = image.read_bytes()
    proc = run_module('predict', image, '--model', 'centernet_dla34', '--weights',
                      centernet_weights, '--out-dir', tmp_path)
    assert_refused(proc, 'frame.png', 'would replace an input image')
    assert image.read_bytes() == before


def test_a_dense_model_without_weights_says_what_to_give(tmp_path):
    proc = run_module('predict', PHOTO, '--model', 'centernet_dla34', '--out-dir', tmp_path)
    assert_refused(proc, 'centernet_dla34', '--weights')
    assert os.listdir(tmp_path) == []
