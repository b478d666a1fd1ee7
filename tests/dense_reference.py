"""PyTorch references of the dense-prediction DLA networks, independent of our Paddle code.

Written from the structure of the public code (xingyizhou/CenterNet ``pose_dla_dcn.py`` for
the CenterNet / FairMOT ``DLASeg``, ucbdrive/dla ``dla_up.py`` for the segmentation DLA-Up),
with timm's DLA as the backbone and torchvision's ``deform_conv2d`` as DCNv2, so module and
state-dict names are the official ones. Needs torch, torchvision and timm: import it only in
tests marked ``torch``.

Random weights hide bugs: DCNv2 starts its offsets and mask logits at zero (a wrong offset
layout would then pass), the up-sampling kernels start bilinear and BatchNorm starts at the
identity. ``calibrate`` gives all of them meaningful random values first.
"""
import copy
import functools
import math

import numpy as np
import timm
import torch
from torch import nn
from torchvision.ops import deform_conv2d

from paddle_dla.weights.convert.layouts import dead_key_shapes

CENTERNET_HEADS = {'hm': 80, 'wh': 2, 'reg': 2}
FAIRMOT_HEADS = {'hm': 1, 'wh': 4, 'id': 128, 'reg': 2}
CALIBRATION_SIZE = (96, 128)  # stride-32 maps of 3 x 4: small, yet enough for BN statistics


def fill_up_weights(up):
    """The public code's bilinear kernel in every channel of a depthwise ConvTranspose2d."""
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    line = 1 - (torch.arange(w.size(2), dtype=w.dtype) / f - c).abs()
    w.copy_((line[:, None] * line[None, :]).expand_as(w))


def _up(channels, factor):
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2,
                            groups=channels, bias=False)
    fill_up_weights(up)
    return up


def backbone_levels(base, x):
    """The six level outputs of a timm DLA (what the official DLA returns in dense models)."""
    x = base.base_layer(x)
    levels = []
    for i in range(6):
        x = getattr(base, f'level{i}')(x)
        levels.append(x)
    return levels


# ---------------------------------------------------------------- CenterNet / FairMOT

class DCN(nn.Module):
    """DCNv2's ``DCN``: offsets and mask from ``conv_offset_mask``, 3x3, stride 1, pad 1."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.conv_offset_mask = nn.Conv2d(cin, 27, 3, padding=1, bias=True)
        bound = 1 / math.sqrt(cin * 9)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.conv_offset_mask.weight)  # as DCNv2: see calibrate
        nn.init.zeros_(self.conv_offset_mask.bias)

    def offset_mask(self, x):
        o1, o2, m = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        return torch.cat((o1, o2), 1), torch.sigmoid(m)

    def forward(self, x):
        offset, mask = self.offset_mask(x)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=1, padding=1, dilation=1,
                             mask=mask)


class DeformConv(nn.Module):
    def __init__(self, chi, cho):
        super().__init__()
        self.actf = nn.Sequential(nn.BatchNorm2d(cho), nn.ReLU())  # registered first, as upstream
        self.conv = DCN(chi, cho)

    def forward(self, x):
        return self.actf(self.conv(x))


class CenterNetIDAUp(nn.Module):
    """Updates ``layers[startp + 1:endp]`` in place: node(up(proj(layer)) + previous)."""

    def __init__(self, o, channels, up_f):
        super().__init__()
        for i in range(1, len(channels)):
            setattr(self, f'proj_{i}', DeformConv(channels[i], o))
            setattr(self, f'up_{i}', _up(o, int(up_f[i])))
            setattr(self, f'node_{i}', DeformConv(o, o))

    def forward(self, layers, startp, endp):
        for i in range(startp + 1, endp):
            k = i - startp
            layers[i] = getattr(self, f'up_{k}')(getattr(self, f'proj_{k}')(layers[i]))
            layers[i] = getattr(self, f'node_{k}')(layers[i] + layers[i - 1])


class CenterNetDLAUp(nn.Module):
    def __init__(self, startp, channels, scales):
        super().__init__()
        self.startp = startp
        in_channels, scales = list(channels), np.array(scales, dtype=int)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f'ida_{i}', CenterNetIDAUp(channels[j], in_channels[j:],
                                                     scales[j:] // scales[j]))
            scales[j + 1:] = scales[j]
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

    def forward(self, layers):
        out = [layers[-1]]
        for i in range(len(layers) - self.startp - 1):
            getattr(self, f'ida_{i}')(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


class CenterNetReference(nn.Module):
    """CenterNet / FairMOT ``DLASeg`` on DLA-34 (down ratio 4): ``{head: map}`` at stride 4."""

    def __init__(self, heads, head_conv=256):
        super().__init__()
        self.base = timm.create_model('dla34', pretrained=False)
        channels = list(self.base.channels)
        self.dla_up = CenterNetDLAUp(2, channels[2:], [1, 2, 4, 8])
        self.ida_up = CenterNetIDAUp(channels[2], channels[2:5], [1, 2, 4])
        self.heads = dict(heads)
        for head, classes in self.heads.items():
            setattr(self, head, nn.Sequential(
                nn.Conv2d(channels[2], head_conv, 3, padding=1, bias=True), nn.ReLU(),
                nn.Conv2d(head_conv, classes, 1, bias=True)))

    def forward(self, x):
        x = self.dla_up(backbone_levels(self.base, x))
        y = [t.clone() for t in x[:3]]
        self.ida_up(y, 0, len(y))
        return {head: getattr(self, head)(y[-1]) for head in self.heads}


# ---------------------------------------------------------------- ucbdrive DLA-Up segmentation

def _conv_bn_relu(cin, cout, kernel):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class SegIDAUp(nn.Module):
    """ucbdrive's IDAUp: project and up-sample every input, then chain the nodes over
    ``cat([x, layer])``; returns ``(x, every node's output)``."""

    def __init__(self, node_kernel, out_dim, channels, up_factors):
        super().__init__()
        for i, c in enumerate(channels):
            f = int(up_factors[i])
            setattr(self, f'proj_{i}', nn.Identity() if c == out_dim else _conv_bn_relu(c, out_dim, 1))
            setattr(self, f'up_{i}', nn.Identity() if f == 1 else _up(out_dim, f))
        for i in range(1, len(channels)):
            setattr(self, f'node_{i}', _conv_bn_relu(2 * out_dim, out_dim, node_kernel))

    def forward(self, layers):
        layers = [getattr(self, f'up_{i}')(getattr(self, f'proj_{i}')(l))
                  for i, l in enumerate(layers)]
        x, y = layers[0], []
        for i in range(1, len(layers)):
            x = getattr(self, f'node_{i}')(torch.cat([x, layers[i]], 1))
            y.append(x)
        return x, y


class SegDLAUp(nn.Module):
    def __init__(self, channels, scales):
        super().__init__()
        in_channels, scales = list(channels), np.array(scales, dtype=int)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f'ida_{i}', SegIDAUp(3, channels[j], in_channels[j:],
                                               scales[j:] // scales[j]))
            scales[j + 1:] = scales[j]
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])

    def forward(self, layers):
        layers = list(layers)
        for i in range(len(layers) - 1):
            x, y = getattr(self, f'ida_{i}')(layers[-i - 2:])
            layers[-i - 1:] = y
        return x


class SegmentationReference(nn.Module):
    """ucbdrive's ``DLASeg`` (down ratio 2): ``(log_softmax(up(fc(x))), fc(x))``."""

    def __init__(self, backbone='dla34', num_classes=19):
        super().__init__()
        self.base = timm.create_model(backbone, pretrained=False)
        channels = list(self.base.channels)
        self.dla_up = SegDLAUp(channels[1:], [2 ** i for i in range(len(channels) - 1)])
        self.fc = nn.Sequential(nn.Conv2d(channels[1], num_classes, 1, bias=True))
        nn.init.normal_(self.fc[0].weight, 0, math.sqrt(2.0 / num_classes))  # upstream's init
        self.up = _up(num_classes, 2)
        self.up.weight.requires_grad = False  # frozen bilinear, never trained
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, x):
        x = self.fc(self.dla_up(backbone_levels(self.base, x)[1:]))
        return self.softmax(self.up(x)), x


# ---------------------------------------------------------------- calibrated random weights

@torch.no_grad()
def calibrate(model, seed, height, width, batches=3, batch_size=2):
    """Meaningful random float64 weights: DCN offsets of about half a pixel (many past one) and masks mostly within
    0.1..0.9 (fitted on each DCN's own input during the first forward), trained-looking
    up-sampling kernels and biases, and BatchNorm statistics re-estimated on random batches."""
    gen = torch.Generator().manual_seed(seed)
    model.double()

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0.0, 0.2, generator=gen)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        elif isinstance(m, nn.ConvTranspose2d) and m.weight.requires_grad:
            m.weight.mul_(1 + 0.3 * randn(m.weight.shape)).add_(0.02 * randn(m.weight.shape))
        elif isinstance(m, DCN):
            m.bias.normal_(0.0, 0.1, generator=gen)
        elif isinstance(m, nn.Conv2d) and m.bias is not None and 'conv_offset_mask' not in name:
            m.bias.normal_(0.0, 0.1, generator=gen)
    for head in getattr(model, 'heads', {}):
        if head == 'hm':
            getattr(model, head)[-1].bias.normal_(-2.19, 0.1, generator=gen)

    # offsets (channels 0..17) to a std of 0.5 px, mask logits (18..26) to 1.2, on real
    # inputs. Random features vary sharply from pixel to pixel, so larger offsets make the
    # network ill-conditioned: at 2 px an input change of 1e-12 moves the outputs by 3e-7
    # (float64 rounding alone breaks the 1e-7 standard), at 1 px PyTorch's own float32 run
    # is 1.5e-3 from its float64 one; at 0.5 px that is 8e-5. The layout mistakes still
    # fail by orders of magnitude (test_dense.py).
    target = torch.tensor([0.5] * 18 + [1.2] * 9, dtype=torch.float64)
    shift = torch.tensor([0.5] * 18 + [0.3] * 9, dtype=torch.float64)

    def fit(dcn, args):
        conv = dcn.conv_offset_mask
        conv.weight.copy_(randn(conv.weight.shape))
        conv.bias.zero_()
        std = conv(args[0]).std(dim=(0, 2, 3)).clamp_min(1e-12)
        conv.weight.mul_((target / std).view(-1, 1, 1, 1))
        conv.bias.copy_(shift * randn(27))

    hooks = [m.register_forward_pre_hook(fit) for m in model.modules() if isinstance(m, DCN)]
    model.train()
    try:
        model(randn(batch_size, 3, height, width))
    finally:
        for h in hooks:
            h.remove()
    for _ in range(batches - 1):
        model(randn(batch_size, 3, height, width))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _centernet_state(heads, seed, head_conv):
    torch.manual_seed(seed)
    return _snapshot(calibrate(CenterNetReference(dict(heads), head_conv), seed, *CALIBRATION_SIZE))


@functools.lru_cache(maxsize=None)
def _segmentation_state(backbone, num_classes, seed):
    torch.manual_seed(seed)
    model = SegmentationReference(backbone, num_classes)
    return _snapshot(calibrate(model, seed, *CALIBRATION_SIZE))


def centernet_reference(heads=None, seed=0, head_conv=256):
    """A fresh float64 CenterNet / FairMOT reference in eval mode with calibrated weights."""
    heads = dict(heads or CENTERNET_HEADS)
    model = CenterNetReference(heads, head_conv).double()
    model.load_state_dict(_centernet_state(tuple(heads.items()), seed, head_conv), strict=True)
    return model.eval()


def scale_offsets(model, scale):
    """Every deformable layer's offsets and masks (their predicting convolution) scaled by
    ``scale``: on photographs the random offsets fitted for small random inputs make the
    reference chaotic, its float32 and float64 runs apart; a tenth keeps them fractional
    and non-zero, and float32 then follows float64."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, 'conv_offset_mask'):
                module.conv_offset_mask.weight.mul_(scale)
                module.conv_offset_mask.bias.mul_(scale)
    return model


def segmentation_reference(backbone='dla34', num_classes=19, seed=0):
    """A fresh float64 DLA-Up segmentation reference in eval mode with calibrated weights."""
    model = SegmentationReference(backbone, num_classes).double()
    model.load_state_dict(_segmentation_state(backbone, num_classes, seed), strict=True)
    return model.eval()


# ---------------------------------------------------------------- checkpoint files

def _official_order(state):
    """The official Tree registers ``project`` after its children, timm before them."""
    keys = [k for k in state if '.project.' not in k]
    for key in (k for k in state if '.project.' in k):
        tree = key.split('.project.')[0] + '.'
        keys.insert(max(i for i, k in enumerate(keys) if k.startswith(tree)) + 1, key)
    return {k: state[k] for k in keys}


def official_dense_state(model, backbone):
    """The state dict as the official code saves it: ``num_batches_tracked`` kept, ``base.fc``
    included, and the official backbone's dead ``project`` entries (random values) added under
    ``base.``. ``backbone`` is our variant name of the backbone, e.g. ``'dla_34'``."""
    state = dict(model.state_dict())
    dtype = next(iter(state.values())).dtype
    gen = torch.Generator().manual_seed(1)
    for key, shape in dead_key_shapes(backbone).items():
        state['base.' + key] = (torch.tensor(7, dtype=torch.long)
                                if key.endswith('num_batches_tracked')
                                else torch.randn(shape, generator=gen, dtype=dtype))
    return _official_order(state)


def _cast(state, dtype):
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def save_centernet_checkpoint(model, path, module_prefix=False, with_optimizer=False, epoch=140,
                              dtype=torch.float32):
    """As CenterNet / FairMOT ``save_model``: ``{'epoch', 'state_dict'[, 'optimizer']}``."""
    state = _cast(official_dense_state(model, 'dla_34'), dtype)
    if module_prefix:
        state = {'module.' + k: v for k, v in state.items()}
    data = {'epoch': epoch, 'state_dict': state}
    if with_optimizer:  # a real Adam state after one step, on a copy of the model
        trained = copy.deepcopy(model).to(dtype)
        optimizer = torch.optim.Adam(trained.parameters(), lr=1.25e-4)
        for p in trained.parameters():
            p.grad = torch.full_like(p, 1e-3)
        optimizer.step()
        data['optimizer'] = optimizer.state_dict()
    torch.save(data, path)


def save_segmentation_checkpoint(model, path, arch='dla34up', backbone='dla_34', epoch=3,
                                 dtype=torch.float32):
    """As ucbdrive ``segment.py``: DataParallel keys, ``{'epoch', 'arch', 'state_dict',
    'best_prec1'}``."""
    state = _cast(official_dense_state(model, backbone), dtype)
    torch.save({'epoch': epoch, 'arch': arch,
                'state_dict': {'module.' + k: v for k, v in state.items()},
                'best_prec1': 61.25}, path)
