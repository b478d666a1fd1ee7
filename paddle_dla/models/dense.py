"""Dense predictors over the DLA backbone: DLA-Up segmentation and CenterNet's ``DLASeg``.

Both keep the reference's names (``base``, ``dla_up``, ``ida_up``, ``fc``, ``up``, one
sublayer per head), so a checkpoint's keys map one to one; ``base`` is our
:class:`~paddle_dla.models.dla.DLA` built ``features_only`` (no second copy of the backbone).
"""
import math

import paddle
import paddle.nn as nn
from paddle.nn.initializer import Constant, Normal, Uniform

from .dense_variants import (CENTERNET_DOWN_RATIO, INPUT_MULTIPLE, SEGMENTATION_DOWN_RATIO,
                             check_heads)
from .dla import DLA, NUM_LEVELS
from .necks import ConcatDLAUp, DLAUp, IDAUp, up_sampler
from .variants import get_config

HEATMAP_BIAS = -2.19   # CenterNet's start for heatmap heads: sigmoid(-2.19) = 0.1
HEAD_INIT_STD = 0.001  # a small start for the heads (CenterNet's ResNet heads use it)
# The first level the necks read is the output stride's: level i has stride 2^i.
_CENTERNET_FIRST_LEVEL = int(math.log2(CENTERNET_DOWN_RATIO))
_CENTERNET_LAST_LEVEL = 5   # CenterNet's last_level: ida_up merges levels 2..4
_SEGMENTATION_FIRST_LEVEL = int(math.log2(SEGMENTATION_DOWN_RATIO))


def _backbone(variant, first_level):
    return DLA(get_config(variant), features_only=True,
               out_indices=tuple(range(first_level, NUM_LEVELS)))


def _head(in_channels, head_conv, channels, is_heatmap):
    """3x3 conv with bias, ReLU, 1x1 conv with bias (``{head}.0``, ``{head}.2``)."""
    last_bias = Constant(HEATMAP_BIAS) if is_heatmap else Constant(0.0)
    std = HEAD_INIT_STD
    return nn.Sequential(
        nn.Conv2D(in_channels, head_conv, 3, padding=1,
                  weight_attr=paddle.ParamAttr(initializer=Normal(0.0, std)),
                  bias_attr=paddle.ParamAttr(initializer=Constant(0.0))),
        nn.ReLU(),
        nn.Conv2D(head_conv, channels, 1,
                  weight_attr=paddle.ParamAttr(initializer=Normal(0.0, std)),
                  bias_attr=paddle.ParamAttr(initializer=last_bias)))


class CenterNetDLA(nn.Layer):
    """CenterNet's ``DLASeg`` (also FairMOT's): DLA, DLA-Up and IDA-Up with DCNv2 to a
    stride-4, 64-channel map, and one head per entry of ``heads``.

    Args:
        config: a :class:`~paddle_dla.models.dense_variants.DenseConfig` (backbone, default heads).
        heads: ``{name: channels}`` in checkpoint order (default: the config's).
        head_conv: width of each head's hidden 3x3 convolution.
        deformable: DCNv2 in the necks (the released models), or plain convolutions.

    ``model(x)`` returns ``{head: map}``, each ``[N, channels, H/4, W/4]``, raw (the heatmap
    before its sigmoid), as the reference does.
    """

    def __init__(self, config, heads=None, head_conv=None, deformable=True):
        super().__init__()
        self.config = config
        self.heads = dict(check_heads(heads if heads is not None else config.heads))
        self.head_conv = config.head_conv if head_conv is None else int(head_conv)
        self.base = _backbone(config.backbone, _CENTERNET_FIRST_LEVEL)
        channels = self.base.feature_info.channels()        # levels 2..5: 64, 128, 256, 512
        scales = [2 ** i for i in range(len(channels))]
        self.dla_up = DLAUp(channels, scales, deformable)
        merged = _CENTERNET_LAST_LEVEL - _CENTERNET_FIRST_LEVEL
        self.ida_up = IDAUp(channels[0], channels[:merged], scales[:merged], deformable)
        for name, out in self.heads.items():
            if hasattr(self, name):  # a method or attribute of the network itself
                raise ValueError(f'head name {name!r} is taken by the network itself')
            self.add_sublayer(name, _head(channels[0], self.head_conv, out, 'hm' in name))

    @property
    def output_names(self):
        return list(self.heads)

    @property
    def num_classes(self):
        """The heatmap's channels: one per detected class (0 without an ``hm`` head)."""
        return self.heads.get('hm', 0)

    def forward(self, x):
        _check_input(x)
        refined = self.dla_up(self.base(x))
        finest = list(refined[:_CENTERNET_LAST_LEVEL - _CENTERNET_FIRST_LEVEL])
        self.ida_up.merge(finest, 0, len(finest))
        return {name: getattr(self, name)(finest[-1]) for name in self.heads}


class DLAUpSegmentation(nn.Layer):
    """DLA-Up segmentation (ucbdrive ``dla_up.py`` ``DLASeg``): DLA, DLA-Up to stride 2,
    a 1x1 classifier ``fc`` and a frozen bilinear depthwise up-sampling ``up``.

    Args:
        config: a :class:`~paddle_dla.models.dense_variants.DenseConfig`.
        num_classes: segmentation classes (default: the config's, 19 for Cityscapes).
        return_logits: also return the stride-2 logits, as the reference's second output.

    ``model(x)`` returns the per-pixel log-probabilities at input resolution
    ``[N, classes, H, W]``; with ``return_logits`` the pair ``(log-probabilities, logits)``.
    """

    def __init__(self, config, num_classes=None, return_logits=False):
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes if num_classes is None else int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.return_logits = return_logits
        self.base = _backbone(config.backbone, _SEGMENTATION_FIRST_LEVEL)
        channels = self.base.feature_info.channels()
        self.dla_up = ConcatDLAUp(channels, [2 ** i for i in range(len(channels))])
        bound = 1.0 / channels[0] ** 0.5
        self.fc = nn.Sequential(nn.Conv2D(
            channels[0], self.num_classes, 1,
            weight_attr=paddle.ParamAttr(initializer=Normal(0.0, (2.0 / self.num_classes) ** 0.5)),
            bias_attr=paddle.ParamAttr(initializer=Uniform(-bound, bound))))
        self.up = up_sampler(self.num_classes, 2 ** _SEGMENTATION_FIRST_LEVEL, trainable=False)

    @property
    def output_names(self):
        return ['logprobs', 'logits'] if self.return_logits else ['logprobs']

    def forward(self, x):
        _check_input(x)
        logits = self.fc(self.dla_up(self.base(x)))
        logprobs = log_softmax_channels(self.up(logits))
        return (logprobs, logits) if self.return_logits else logprobs


def log_softmax_channels(x):
    """Log-softmax over axis 1, computed from its definition. Paddle 3.3's CPU
    ``F.log_softmax`` returns wrong values at a few positions of large NCHW inputs (errors
    of 10 and more at logits of magnitude 10, in float64 too)."""
    shifted = x - x.max(axis=1, keepdim=True)
    return shifted - paddle.log(paddle.exp(shifted).sum(axis=1, keepdim=True))


def _check_input(x):
    """Shapes known while tracing or running must be multiples of 32: the up-sampled maps
    would not line up with the finer ones otherwise."""
    height, width = x.shape[-2], x.shape[-1]
    for size in (height, width):
        if isinstance(size, int) and size > 0 and size % INPUT_MULTIPLE:
            raise ValueError(f'dense DLA models need height and width that are multiples of '
                             f'{INPUT_MULTIPLE}, got {height}x{width}')
