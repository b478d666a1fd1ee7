"""DLA-Up and IDA-Up: the necks that merge a DLA backbone's levels back to a fine map.

Two wirings exist in the public code, and checkpoints of both are in use:

* CenterNet / FairMOT (``pose_dla_dcn.py``): :class:`IDAUp` projects each coarser map with
  a (deformable) conv, up-samples it with a depthwise transposed conv, adds the finer map
  and refines the sum with another (deformable) conv; :class:`DLAUp` chains them from the
  coarsest level down and returns every refined level, finest first.
* ucbdrive DLA-Up segmentation (``dla_up.py``): :class:`ConcatIDAUp` projects with 1x1
  convs only where channels differ and merges by concatenation;
  :class:`ConcatDLAUp` returns the finest map.

Sublayer names follow that code (``ida_0``, ``proj_1``, ``up_1``, ``node_1``), so
checkpoint keys map one to one.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn

from .dcn import DeformConv
from .layers import TorchStyleBatchNorm2D, conv2d


def bilinear_up_weights(channels, factor):
    """The depthwise ``[channels, 1, 2f, 2f]`` kernel that makes a stride-``f`` transposed
    convolution bilinear up-sampling (the reference's ``fill_up_weights``)."""
    size = 2 * factor
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - np.abs(np.arange(size) / f - c)
    kernel = np.outer(ramp, ramp).astype('float32')
    return np.broadcast_to(kernel, (channels, 1, size, size)).copy()


def up_sampler(channels, factor, trainable=True):
    """Depthwise transposed conv, ``2f`` kernel, stride ``f``, no bias, starting bilinear."""
    layer = nn.Conv2DTranspose(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, groups=channels,
        weight_attr=paddle.ParamAttr(initializer=nn.initializer.Assign(
            bilinear_up_weights(channels, factor))), bias_attr=False)
    layer.weight.stop_gradient = not trainable
    return layer


class IDAUp(nn.Layer):
    """Iterative deep aggregation (CenterNet): ``layers[i] = node_i(up_i(proj_i(layers[i]))
    + layers[i - 1])`` for i = 1.. in place, so each map carries everything finer.

    Args:
        out_channels: width of every merged map.
        channels: input widths, finest first (the finest is added to unprojected, so it
            must already be ``out_channels`` wide).
        up_factors: each input's scale relative to the finest.
        deformable: DCNv2 (CenterNet) or plain 3x3 convolutions.
    """

    def __init__(self, out_channels, channels, up_factors, deformable=True):
        super().__init__()
        if channels[0] != out_channels:
            raise ValueError(f'the finest input must be {out_channels} channels wide, not '
                             f'{channels[0]}')
        for i in range(1, len(channels)):
            factor = int(up_factors[i])
            setattr(self, f'proj_{i}', DeformConv(channels[i], out_channels, deformable))
            setattr(self, f'up_{i}', up_sampler(out_channels, factor))
            setattr(self, f'node_{i}', DeformConv(out_channels, out_channels, deformable))

    def merge(self, layers, start, end):
        """The reference's in-place pass over ``layers[start + 1:end]``."""
        for i in range(start + 1, end):
            j = i - start
            up = getattr(self, f'up_{j}')(getattr(self, f'proj_{j}')(layers[i]))
            layers[i] = getattr(self, f'node_{j}')(up + layers[i - 1])

    def forward(self, layers):
        layers = list(layers)
        self.merge(layers, 0, len(layers))
        return layers


class DLAUp(nn.Layer):
    """DLA-Up (CenterNet): IDA-Up from the coarsest level down to the finest.

    Args:
        channels: widths of the levels it reads, finest first, e.g. (64, 128, 256, 512).
        scales: their strides relative to the finest, e.g. (1, 2, 4, 8).

    ``forward(levels)`` takes those maps, finest first, and returns the refined maps,
    finest first (the last is the coarsest input, unchanged).
    """

    def __init__(self, channels, scales, deformable=True):
        super().__init__()
        channels, in_channels = list(channels), list(channels)
        scales = np.array(scales, dtype=int)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f'ida_{i}', IDAUp(channels[j], in_channels[j:],
                                            scales[j:] // scales[j], deformable))
            scales[j + 1:] = scales[j]
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])
        self.num_levels = len(channels)

    def forward(self, levels):
        layers = list(levels)
        out = [layers[-1]]
        for i in range(self.num_levels - 1):
            getattr(self, f'ida_{i}').merge(layers, self.num_levels - i - 2, self.num_levels)
            out.insert(0, layers[-1])
        return out


def _conv_bn_relu(in_channels, out_channels, kernel):
    return nn.Sequential(conv2d(in_channels, out_channels, kernel, 1, kernel // 2),
                         TorchStyleBatchNorm2D(out_channels), nn.ReLU())


class ConcatIDAUp(nn.Layer):
    """Iterative deep aggregation as DLA-Up segmentation wires it (ucbdrive ``dla_up.py``):
    every input projected (1x1 conv + BN + ReLU where its width differs) and up-sampled to
    the finest scale, then ``x = node_i(concat(x, layers[i]))``. Returns ``(x, [each x])``."""

    def __init__(self, node_kernel, out_channels, channels, up_factors):
        super().__init__()
        self.num_inputs = len(channels)
        for i, width in enumerate(channels):
            factor = int(up_factors[i])
            if width != out_channels:
                setattr(self, f'proj_{i}', _conv_bn_relu(width, out_channels, 1))
            if factor != 1:
                setattr(self, f'up_{i}', up_sampler(out_channels, factor))
        for i in range(1, len(channels)):
            setattr(self, f'node_{i}', _conv_bn_relu(2 * out_channels, out_channels,
                                                     node_kernel))

    def _scaled(self, i, x):
        for name in (f'proj_{i}', f'up_{i}'):
            layer = getattr(self, name, None)
            x = layer(x) if layer is not None else x
        return x

    def forward(self, layers):
        x = self._scaled(0, layers[0])
        merged = []
        for i in range(1, self.num_inputs):
            x = getattr(self, f'node_{i}')(paddle.concat([x, self._scaled(i, layers[i])], 1))
            merged.append(x)
        return x, merged


class ConcatDLAUp(nn.Layer):
    """DLA-Up as the segmentation networks use it: returns the finest merged map."""

    def __init__(self, channels, scales, node_kernel=3):
        super().__init__()
        channels, in_channels = list(channels), list(channels)
        scales = np.array(scales, dtype=int)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f'ida_{i}', ConcatIDAUp(node_kernel, channels[j], in_channels[j:],
                                                  scales[j:] // scales[j]))
            scales[j + 1:] = scales[j]
            in_channels[j + 1:] = [channels[j]] * len(in_channels[j + 1:])
        self.num_levels = len(channels)

    def forward(self, levels):
        layers = list(levels)
        for i in range(self.num_levels - 1):
            x, merged = getattr(self, f'ida_{i}')(layers[-i - 2:])
            layers[-i - 1:] = merged
        return x
