"""The dense networks against their PyTorch reference (``dense_reference.py``): DLA-Up
segmentation and CenterNet / FairMOT ``DLASeg`` with DCNv2, in float64 (structure) and in
float32 through the converter, for every head and output, at a square and a non-square
size; our DCN against a NumPy one; and the mistakes a port can make, shown to fail."""
import numpy as np
import paddle
import pytest

import paddle_dla
from paddle_dla.models import dcn as dcn_module
from paddle_dla.models import necks
from paddle_dla.weights.convert.dense import convert_dense_state
from paddle_dla.models.dense_variants import FAIRMOT_HEADS
torch = pytest.importorskip('torch')  # marked torch: skipped whole without PyTorch
pytest.importorskip('torchvision')
pytest.importorskip('timm')
from dense_reference import (CENTERNET_HEADS, centernet_reference, official_dense_state,
                             segmentation_reference)
from helpers import FLOAT32_LIMIT, FLOAT64_LIMIT, relative_error
from numpy_dcn import modulated_deform_conv2d

pytestmark = pytest.mark.torch

STRUCTURE_TOLERANCE = FLOAT64_LIMIT
FLOAT32_TOLERANCE = FLOAT32_LIMIT
SIZES = [(64, 96), (96, 96)]   # multiples of 32, one not square
SEGMENTATION_BACKBONES = {'dla34up': ('dla34', 'dla_34'), 'dla60up': ('dla60', 'dla_60'),
                          'dla102up': ('dla102', 'dla_102'), 'dla169up': ('dla169', 'dla_169')}


def _images(height, width, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, height, width, generator=gen, dtype=torch.float64)


@torch.no_grad()
def _reference_outputs(model, images):
    out = model(images)
    if isinstance(out, dict):
        return {k: v.numpy() for k, v in out.items()}
    return {'logprobs': out[0].numpy(), 'logits': out[1].numpy()}


def _ours(name, reference, backbone, dtype='float64', **kwargs):
    """Our model holding the reference's weights, converted in memory from the official
    layout (base.fc and dead keys included) as ``dtype``."""
    conversion = convert_dense_state(official_dense_state(reference, backbone), 'reference',
                                     dtype=dtype)
    model = paddle_dla.create_model(name, **conversion.model_kwargs(), **kwargs)
    if dtype == 'float64':
        model.to(dtype='float64')
    paddle_dla.load_state_dict_strict(model, conversion.state)
    model.eval()
    return model


def _our_outputs(model, images, dtype='float64'):
    with paddle.no_grad():
        out = model(paddle.to_tensor(images.numpy().astype(dtype)))
    if isinstance(out, dict):
        return {k: v.numpy().astype(np.float64) for k, v in out.items()}
    return {'logprobs': out[0].numpy().astype(np.float64),
            'logits': out[1].numpy().astype(np.float64)}


def _errors(ours, reference):
    assert ours.keys() == reference.keys()
    return {k: relative_error(ours[k], reference[k]) for k in reference}


# --- DCN ---------------------------------------------------------------------------------

def _dcn_case(height, width, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, height, width))
    offset_mask = rng.standard_normal((2, 27, height, width)) * np.r_[[3.0] * 18, [1.5] * 9][
        None, :, None, None]
    weight, bias = rng.standard_normal((4, 5, 3, 3)), rng.standard_normal(4)
    return x, offset_mask, weight, bias


def _paddle_dcn(x, offset_mask, weight, bias, permute=False):
    layer = dcn_module.DCN(x.shape[1], weight.shape[0])
    layer.to(dtype='float64')
    layer.weight.set_value(weight)
    layer.bias.set_value(bias)
    # conv_offset_mask reproduces the given maps: a 3x3 conv cannot, so feed them through a
    # stand-in that returns them (the layer's own offset split and sigmoid still run)
    layer.conv_offset_mask = _Constant(offset_mask)
    if permute:
        layer.forward = _all_dy_then_dx(layer)
    with paddle.no_grad():
        return layer(paddle.to_tensor(x)).numpy()


class _Constant(paddle.nn.Layer):
    def __init__(self, value):
        super().__init__()
        self.value = paddle.to_tensor(value)

    def forward(self, x):
        return self.value


def _all_dy_then_dx(layer):
    """The classic porting mistake: offsets read as all dy first, then all dx."""
    def forward(x):
        offset_mask = layer.conv_offset_mask(x)
        n, _, h, w = offset_mask.shape
        offset = offset_mask[:, :18].reshape([n, 2, 9, h, w]).transpose([0, 2, 1, 3, 4])
        mask = paddle.nn.functional.sigmoid(offset_mask[:, 18:])
        return paddle.vision.ops.deform_conv2d(x, offset.reshape([n, 18, h, w]), layer.weight,
                                               layer.bias, padding=1, mask=mask)
    return forward


@pytest.mark.paddle_compat
@pytest.mark.parametrize('height,width', [(7, 9), (12, 12)])
def test_dcn_equals_numpy_modulated_deformable_convolution(height, width):
    x, offset_mask, weight, bias = _dcn_case(height, width)
    mask = 1 / (1 + np.exp(-offset_mask[:, 18:]))
    expected = modulated_deform_conv2d(x, offset_mask[:, :18], mask, weight, bias)
    assert relative_error(_paddle_dcn(x, offset_mask, weight, bias), expected) < 1e-10
    wrong = relative_error(_paddle_dcn(x, offset_mask, weight, bias, permute=True), expected)
    assert wrong > 1e-2, wrong


# --- float64 structure ---------------------------------------------------------------------

@pytest.mark.paddle_compat
@pytest.mark.parametrize('height,width', SIZES)
@pytest.mark.parametrize('heads', [pytest.param(CENTERNET_HEADS, id='centernet'),
                                   pytest.param(FAIRMOT_HEADS, id='fairmot',
                                                marks=pytest.mark.full)])
def test_centernet_structure_float64(heads, height, width):
    heads = dict(heads)
    reference = centernet_reference(heads)
    name = 'fairmot_dla34' if 'id' in heads else 'centernet_dla34'
    ours = _ours(name, reference, 'dla_34')
    assert ours.heads == heads
    images = _images(height, width)
    errors = _errors(_our_outputs(ours, images), _reference_outputs(reference, images))
    assert max(errors.values()) <= STRUCTURE_TOLERANCE, errors


@pytest.mark.paddle_compat
@pytest.mark.parametrize('height,width', SIZES)
@pytest.mark.parametrize('name', [
    'dla34up', *[pytest.param(n, marks=(pytest.mark.full, pytest.mark.sweep))
                 for n in ('dla60up', 'dla102up', 'dla169up')]])
def test_segmentation_structure_float64(name, height, width):
    timm_name, backbone = SEGMENTATION_BACKBONES[name]
    reference = segmentation_reference(timm_name)
    ours = _ours(name, reference, backbone, return_logits=True)
    images = _images(height, width)
    errors = _errors(_our_outputs(ours, images), _reference_outputs(reference, images))
    assert max(errors.values()) <= STRUCTURE_TOLERANCE, errors
    assert _our_outputs(ours, images)['logprobs'].shape[2:] == (height, width)


# --- a port's mistakes fail by orders of magnitude ------------------------------------------

def _skip_first_node(self, layers, start, end):
    """IDA-Up with its first aggregation node left out."""
    for i in range(start + 1, end):
        j = i - start
        up = getattr(self, f'up_{j}')(getattr(self, f'proj_{j}')(layers[i]))
        layers[i] = up + layers[i - 1] if j == 1 else getattr(self, f'node_{j}')(
            up + layers[i - 1])


def _identity_bn(model):
    """One BatchNorm of the neck forgotten: its statistics and affine left at identity."""
    bn = model.ida_up.node_2.actf[0]
    for tensor, value in ((bn.weight, 1.0), (bn.bias, 0.0), (bn._mean, 0.0),
                          (bn._variance, 1.0)):
        tensor.set_value(np.full(tensor.shape, value, str(tensor.dtype).split('.')[-1]))


@pytest.mark.paddle_compat
@pytest.mark.parametrize('mistake', ['offset order', 'missing BN', 'skipped IDA node'])
def test_a_port_mistake_fails_parity_by_orders_of_magnitude(mistake, monkeypatch):
    reference = centernet_reference(CENTERNET_HEADS)
    ours = _ours('centernet_dla34', reference, 'dla_34')
    if mistake == 'offset order':
        for layer in ours.sublayers():
            if isinstance(layer, dcn_module.DCN):
                layer.forward = _all_dy_then_dx(layer)
    elif mistake == 'missing BN':
        _identity_bn(ours)
    else:
        monkeypatch.setattr(necks.IDAUp, 'merge', _skip_first_node)
    images = _images(*SIZES[0])
    errors = _errors(_our_outputs(ours, images), _reference_outputs(reference, images))
    # at least 100x the float32 tolerance (10^6 x the float64 one): relative errors are
    # measured against max(1, max|ref|), so a wholly wrong map scores about 1
    assert max(errors.values()) > 100 * FLOAT32_TOLERANCE, errors
