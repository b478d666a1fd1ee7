"""Conv and BatchNorm layers initialised and updated exactly as the official PyTorch DLA."""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import Normal, Uniform

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Paddle's convention: equals PyTorch's momentum=0.1


def conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1, bias=False,
           fan_in_init=False):
    """Conv2D with the official DLA init: weight ~ N(0, sqrt(2 / (k * k * out_channels))).

    ``fan_in_init`` uses PyTorch's default instead, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what
    a fresh classifier gets in timm, and what keeps a small new head's logits near zero
    (the official rule gives a 2-class head weights of standard deviation 1).
    """
    bound = 1.0 / math.sqrt(in_channels // groups * kernel_size * kernel_size)
    if fan_in_init:
        weight_init = Uniform(-bound, bound)
    else:
        weight_init = Normal(0.0, math.sqrt(2.0 / (kernel_size * kernel_size * out_channels)))
    # PyTorch's default bias init, which the official code keeps for the classifier.
    bias_attr = paddle.ParamAttr(initializer=Uniform(-bound, bound)) if bias else False
    return nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     groups=groups, weight_attr=paddle.ParamAttr(initializer=weight_init),
                     bias_attr=bias_attr)


class TorchStyleBatchNorm2D(nn.BatchNorm2D):
    """BatchNorm2D whose running variance follows PyTorch (unbiased batch variance).

    Paddle's kernel folds the biased batch variance into ``_variance``; PyTorch folds
    the unbiased one. On the deep, small feature maps of DLA (2x2 at 64 px) the two
    drift apart quickly, so fine-tuned statistics would not match the reference.
    Weight starts at 1 and bias at 0, as in the official init.
    """

    def __init__(self, num_features):
        super().__init__(num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)

    def forward(self, x):
        if self.training:
            with paddle.no_grad():
                centered = x - x.mean(axis=[0, 2, 3], keepdim=True)
                batch_var = (centered * centered).mean(axis=[0, 2, 3])
        out = F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias,
                           training=self.training, momentum=self._momentum,
                           epsilon=self._epsilon, data_format=self._data_format)
        if self.training:
            count = x.shape[0] * x.shape[2] * x.shape[3]
            if count > 1:
                with paddle.no_grad():
                    extra = batch_var * ((1.0 - self._momentum) / (count - 1))
                    self._variance.set_value(self._variance + extra.astype(self._variance.dtype))
        return out
