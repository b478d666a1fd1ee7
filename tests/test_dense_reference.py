"""Tests of the dense-prediction references themselves: if the yardstick is wrong, every
parity test built on it proves nothing. (torch and the reference are imported inside the
tests, so the module still collects where torch is blocked.)"""
import numpy as np
import pytest

from helpers import relative_error
from numpy_dcn import modulated_deform_conv2d
from paddle_dla.weights.convert.layouts import dead_key_shapes

pytestmark = pytest.mark.torch

BN_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')
CENTERNET_HEADS = {'hm': 80, 'wh': 2, 'reg': 2}
FAIRMOT_HEADS = {'hm': 1, 'wh': 4, 'id': 128, 'reg': 2}


def _rand(gen, *shape, scale=1.0):
    import torch
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


def _dcn_case(n, c, h, w, cout, stride, padding, dilation, seed=0):
    import torch
    from torchvision.ops import deform_conv2d
    gen = torch.Generator().manual_seed(seed)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho, wo = (h + 2 * ph - 2 * dh - 1) // sh + 1, (w + 2 * pw - 2 * dw - 1) // sw + 1
    x = _rand(gen, n, c, h, w)
    offset = _rand(gen, n, 18, ho, wo, scale=3.0)  # several pixels: many samples leave the image
    mask = torch.rand(n, 9, ho, wo, generator=gen, dtype=torch.float64)
    weight, bias = _rand(gen, cout, c, 3, 3), _rand(gen, cout)
    expected = deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding,
                              dilation=dilation, mask=mask).numpy()
    # where the sample of each tap lands (offset channel 2k is dy, 2k + 1 is dx)
    k = np.arange(9)
    ys = (np.arange(ho) * sh - ph)[None, None, :, None] + (k // 3 * dh)[None, :, None, None]
    xs = (np.arange(wo) * sw - pw)[None, None, None, :] + (k % 3 * dw)[None, :, None, None]
    ys, xs = ys + offset[:, 0::2].numpy(), xs + offset[:, 1::2].numpy()
    outside = np.mean((ys <= -1) | (ys >= h) | (xs <= -1) | (xs >= w))
    return (x, offset, mask, weight, bias), expected, outside


DCN_CASES = {  # (n, c, h, w, cout, stride, padding, dilation)
    'square': (2, 3, 7, 7, 4, (1, 1), (1, 1), (1, 1)),
    'non-square-strided-dilated': (1, 5, 6, 11, 3, (2, 1), (1, 2), (1, 2)),
}


@pytest.mark.parametrize('case', DCN_CASES, ids=list(DCN_CASES))
def test_numpy_dcn_equals_torchvision(case):
    stride, padding, dilation = DCN_CASES[case][5:]
    (x, offset, mask, weight, bias), expected, outside = _dcn_case(*DCN_CASES[case])
    assert 0.05 < outside < 0.9  # the border rule is exercised
    ours = modulated_deform_conv2d(x.numpy(), offset.numpy(), mask.numpy(), weight.numpy(),
                                   bias.numpy(), stride, padding, dilation)
    assert ours.shape == expected.shape
    assert relative_error(ours, expected) <= 1e-10


def test_swapped_offset_layout_is_caught():
    """Reading the offsets as "all dy, then all dx" must be wildly wrong, not slightly."""
    import torch
    (x, offset, mask, weight, bias), expected, _ = _dcn_case(*DCN_CASES['square'])
    swapped = torch.stack([offset[:, :9], offset[:, 9:]], dim=2).flatten(1, 2)
    args = (mask.numpy(), weight.numpy(), bias.numpy())
    right = relative_error(modulated_deform_conv2d(x.numpy(), offset.numpy(), *args), expected)
    wrong = relative_error(modulated_deform_conv2d(x.numpy(), swapped.numpy(), *args), expected)
    assert wrong > 1e-2 and wrong > 1e8 * max(right, 1e-16)


def test_dcn_module_passes_chunked_offsets_unpermuted():
    import torch
    import dense_reference as ref
    gen = torch.Generator().manual_seed(3)
    dcn = ref.DCN(4, 6).double()
    with torch.no_grad():
        dcn.conv_offset_mask.weight.copy_(_rand(gen, 27, 4, 3, 3, scale=0.5))
        dcn.conv_offset_mask.bias.copy_(_rand(gen, 27))
        dcn.bias.copy_(_rand(gen, 6))
        x = _rand(gen, 2, 4, 8, 10)
        out = dcn(x).numpy()
        raw = dcn.conv_offset_mask(x).numpy()
    assert raw[:, :18].std() > 1.0
    expected = modulated_deform_conv2d(x.numpy(), raw[:, :18], 1 / (1 + np.exp(-raw[:, 18:])),
                                       dcn.weight.detach().numpy(), dcn.bias.detach().numpy())
    assert relative_error(out, expected) <= 1e-10


# Official files: every key, num_batches_tracked and the dead `project` entries included;
# REFERENCE §6's value counts are the parameters only (BN running statistics and counters
# left out; dead project weights, base.fc and the frozen `up` counted).
CENTERNET_COUNTS = {'centernet': (CENTERNET_HEADS, 400, 20_188_892),
                    'fairmot': (FAIRMOT_HEADS, 404, 20_349_711)}
SEGMENTATION_COUNTS = [
    pytest.param('dla34', 'dla_34', 369, 18_095_163, id='dla34up'),
    pytest.param('dla60', 'dla_60', 531, 31_303_227, id='dla60up'),
    pytest.param('dla102', 'dla_102', 795, 42_700_859, id='dla102up', marks=pytest.mark.full),
    pytest.param('dla169', 'dla_169', 1185, 62_958_139, id='dla169up', marks=pytest.mark.full),
]


def _check_counts(state, keys, values, backbone):
    import torch
    assert len(state) == keys
    assert sum(v.numel() for k, v in state.items() if not k.endswith(BN_BUFFERS)) == values
    dead = {'base.' + k for k in dead_key_shapes(backbone)}
    assert dead <= set(state) and {'base.fc.weight', 'base.fc.bias'} <= set(state)
    assert all(state[k].dtype == torch.long and state[k].dim() == 0
               for k in state if k.endswith('num_batches_tracked'))


def _prefixes(state):
    seen = []
    for key in state:
        parts = key.split('.')
        prefix = '.'.join(parts[:2]) if parts[0] == 'dla_up' else parts[0]
        if prefix not in seen:
            seen.append(prefix)
    return seen


@pytest.mark.parametrize('name', CENTERNET_COUNTS)
def test_centernet_official_state_counts(name):
    import dense_reference as ref
    heads, keys, values = CENTERNET_COUNTS[name]
    state = ref.official_dense_state(ref.CenterNetReference(heads), 'dla_34')
    _check_counts(state, keys, values, 'dla_34')
    assert _prefixes(state) == ['base', 'dla_up.ida_0', 'dla_up.ida_1', 'dla_up.ida_2',
                                'ida_up', *heads]
    assert sum(k.endswith('conv_offset_mask.weight') for k in state) == 16
    assert list(state).index('base.level3.project.0.weight') > list(state).index(
        'base.level3.tree2.root.bn.running_var')  # the official Tree's registration order


@pytest.mark.parametrize('backbone, variant, keys, values', SEGMENTATION_COUNTS)
def test_segmentation_official_state_counts(backbone, variant, keys, values):
    import dense_reference as ref
    state = ref.official_dense_state(ref.SegmentationReference(backbone), variant)
    _check_counts(state, keys, values, variant)
    assert _prefixes(state) == ['base', 'dla_up.ida_0', 'dla_up.ida_1', 'dla_up.ida_2',
                                'dla_up.ida_3', 'fc', 'up']


@pytest.mark.full  # the writers are used, and so checked, by every test of test_dense_cli.py
def test_checkpoint_writers(tmp_path):
    import torch
    import dense_reference as ref
    model = ref.CenterNetReference(CENTERNET_HEADS)
    ref.save_centernet_checkpoint(model, tmp_path / 'c.pth', module_prefix=True,
                                  with_optimizer=True)
    data = torch.load(tmp_path / 'c.pth', weights_only=True, mmap=True)
    assert set(data) == {'epoch', 'state_dict', 'optimizer'} and data['epoch'] == 140
    assert len(data['state_dict']) == 400
    assert all(k.startswith('module.') for k in data['state_dict'])
    assert data['state_dict']['module.hm.2.weight'].dtype == torch.float32
    assert len(data['optimizer']['state']) == len(list(model.parameters()))

    seg = ref.SegmentationReference('dla34')
    ref.save_segmentation_checkpoint(seg, tmp_path / 's.pth')
    data = torch.load(tmp_path / 's.pth', weights_only=True)
    assert set(data) == {'epoch', 'arch', 'state_dict', 'best_prec1'}
    assert data['arch'] == 'dla34up' and type(data['best_prec1']) is float
    assert len(data['state_dict']) == 369
    assert all(k.startswith('module.') for k in data['state_dict'])


def _dcn_statistics(model, x):
    """(offset std, mask min, mask max) of every DCN during one eval forward, and the output."""
    import torch
    import dense_reference as ref
    stats = []

    def record(dcn, args):
        offset, mask = dcn.offset_mask(args[0])
        stats.append((offset.std().item(), mask.min().item(), mask.max().item()))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, ref.DCN)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return stats, out


@pytest.mark.parametrize('heads', [pytest.param(CENTERNET_HEADS, id='centernet'),
                                   pytest.param(FAIRMOT_HEADS, id='fairmot',
                                                marks=pytest.mark.full)])
def test_calibrated_centernet_is_meaningful(heads):
    import torch
    import dense_reference as ref
    model = ref.centernet_reference(heads)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    stats, out = _dcn_statistics(model, x)
    assert len(stats) == 16
    for offset_std, mask_min, mask_max in stats:
        assert 0.25 < offset_std < 2.0
        assert mask_min < 0.2 and mask_max > 0.8
    assert list(out) == list(heads)
    for head, classes in heads.items():
        assert out[head].shape == (2, classes, 16, 24)
        assert torch.isfinite(out[head]).all()
        assert out[head].std(dim=(2, 3)).min() > 1e-3  # every channel varies over the image
    assert abs(out['hm'].mean().item() + 2.19) < 0.5
    bilinear = torch.nn.ConvTranspose2d(64, 64, 8, stride=4, padding=2, groups=64, bias=False)
    ref.fill_up_weights(bilinear)
    up, bilinear = model.ida_up.up_2.weight, bilinear.weight.double()
    assert 0.05 < (up - bilinear).abs().max() / bilinear.abs().max() < 1.0  # near, not equal
    assert model.training is False and next(model.parameters()).dtype == torch.float64


@pytest.mark.parametrize('backbone', ['dla34', pytest.param('dla60', marks=pytest.mark.full),
                                      pytest.param('dla102', marks=pytest.mark.full),
                                      pytest.param('dla169', marks=pytest.mark.full)])
def test_calibrated_segmentation_is_meaningful(backbone):
    import torch
    import dense_reference as ref
    model = ref.segmentation_reference(backbone)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with torch.no_grad():
        log_probs, logits = model(x)
    assert log_probs.shape == (2, 19, 64, 96) and logits.shape == (2, 19, 32, 48)
    assert torch.isfinite(log_probs).all() and torch.isfinite(logits).all()
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(()).double())
    assert logits.std() > 0.1 and len(log_probs.argmax(1).unique()) > 3
    line = torch.tensor([0.25, 0.75, 0.75, 0.25], dtype=torch.float64)
    assert torch.equal(model.up.weight, (line[:, None] * line).expand(19, 1, 4, 4))  # frozen
    assert not model.up.weight.requires_grad
