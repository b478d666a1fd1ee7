"""Modulated deformable convolution (DCNv2) under CenterNet's module and parameter names.

CenterNet's ``DCN`` predicts 27 channels with ``conv_offset_mask``: two thirds offsets, one
third mask logits. Its offsets are split in three chunks and the first two concatenated
again, which is the first 18 channels unchanged; channel 2k is dy and 2k+1 dx of kernel
tap k. Paddle's ``deform_conv2d`` with a mask is DCNv2 and reads that same layout, so the
offsets pass through unpermuted.
"""
import math

import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant, Uniform
from paddle.vision.ops import deform_conv2d

from .layers import TorchStyleBatchNorm2D

KERNEL = 3
TAPS = KERNEL * KERNEL


def _kernel_and_bias(layer, in_channels, out_channels):
    """A 3x3 kernel, U(+-1/sqrt(fan_in)), and a zero bias, as DCNv2 starts them."""
    bound = 1.0 / math.sqrt(in_channels * TAPS)
    weight = layer.create_parameter([out_channels, in_channels, KERNEL, KERNEL],
                                    default_initializer=Uniform(-bound, bound))
    bias = layer.create_parameter([out_channels], is_bias=True,
                                  default_initializer=Constant(0.0))
    return weight, bias


class DCN(nn.Layer):
    """3x3 DCNv2, stride 1, padding 1, one deformable group: ``weight``, ``bias`` and
    ``conv_offset_mask`` (a 3x3 conv to 27 channels), initialised as DCNv2 initialises them
    (offsets and masks start at zero, so the layer starts as a plain convolution with every
    tap weighted by 0.5)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.weight, self.bias = _kernel_and_bias(self, in_channels, out_channels)
        self.conv_offset_mask = nn.Conv2D(
            in_channels, 3 * TAPS, KERNEL, padding=1,
            weight_attr=paddle.ParamAttr(initializer=Constant(0.0)),
            bias_attr=paddle.ParamAttr(initializer=Constant(0.0)))

    def forward(self, x):
        offset_mask = self.conv_offset_mask(x)
        offset = offset_mask[:, :2 * TAPS]
        mask = paddle.nn.functional.sigmoid(offset_mask[:, 2 * TAPS:])
        return deform_conv2d(x, offset, self.weight, self.bias, stride=1, padding=1,
                             dilation=1, deformable_groups=1, mask=mask)


class PlainConv(nn.Layer):
    """The non-deformable stand-in for :class:`DCN`: a 3x3 convolution with bias, under the
    same ``weight`` / ``bias`` names (for necks built without deformable convolutions)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.weight, self.bias = _kernel_and_bias(self, in_channels, out_channels)

    def forward(self, x):
        return paddle.nn.functional.conv2d(x, self.weight, self.bias, padding=1)


class DeformConv(nn.Layer):
    """CenterNet's ``DeformConv``: the convolution, then ``actf`` (BatchNorm, ReLU).
    ``actf`` is registered first, as in the reference, so the keys come in its order."""

    def __init__(self, in_channels, out_channels, deformable=True):
        super().__init__()
        self.actf = nn.Sequential(TorchStyleBatchNorm2D(out_channels), nn.ReLU())
        self.conv = (DCN if deformable else PlainConv)(in_channels, out_channels)

    def forward(self, x):
        return self.actf(self.conv(x))
