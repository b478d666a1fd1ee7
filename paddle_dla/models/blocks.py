"""DLA building blocks. Sublayer names follow the official code so checkpoint keys map 1:1."""
import math

import paddle
import paddle.nn as nn

from .layers import TorchStyleBatchNorm2D, conv2d


def bottleneck_width(out_channels, cardinality, base_width, expansion=2):
    """Mid width of a (grouped) bottleneck: floor(out * base_width / 64) * cardinality // 2."""
    return int(math.floor(out_channels * (base_width / 64)) * cardinality) // expansion


class BasicBlock(nn.Layer):
    """Two 3x3 convs with a residual (DLA-34)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = conv2d(in_channels, out_channels, 3, stride, 1)
        self.bn1 = TorchStyleBatchNorm2D(out_channels)
        self.conv2 = conv2d(out_channels, out_channels, 3, 1, 1)
        self.bn2 = TorchStyleBatchNorm2D(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Layer):
    """1x1 -> grouped 3x3 -> 1x1 bottleneck, expansion 2 (DLA-46..169 and their X forms)."""

    def __init__(self, in_channels, out_channels, stride=1, cardinality=1, base_width=64):
        super().__init__()
        mid = bottleneck_width(out_channels, cardinality, base_width)
        self.conv1 = conv2d(in_channels, mid, 1)
        self.bn1 = TorchStyleBatchNorm2D(mid)
        self.conv2 = conv2d(mid, mid, 3, stride, 1, groups=cardinality)
        self.bn2 = TorchStyleBatchNorm2D(mid)
        self.conv3 = conv2d(mid, out_channels, 1)
        self.bn3 = TorchStyleBatchNorm2D(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class Res2NetBottleneck(nn.Layer):
    """Res2Net bottleneck (Gao et al.): the 3x3 stage works on `scale` hierarchical splits."""

    def __init__(self, in_channels, out_channels, stride=1, cardinality=1, base_width=64,
                 scale=4):
        super().__init__()
        self.is_first = stride > 1
        self.scale = scale
        self.width = bottleneck_width(out_channels, cardinality, base_width)
        self.conv1 = conv2d(in_channels, self.width * scale, 1)
        self.bn1 = TorchStyleBatchNorm2D(self.width * scale)
        n_convs = max(1, scale - 1)
        self.convs = nn.LayerList([conv2d(self.width, self.width, 3, stride, 1, groups=cardinality)
                                   for _ in range(n_convs)])
        self.bns = nn.LayerList([TorchStyleBatchNorm2D(self.width) for _ in range(n_convs)])
        # PyTorch's AvgPool2d counts the zero padding; Paddle's needs exclusive=False for that.
        self.pool = nn.AvgPool2D(3, stride, 1, exclusive=False) if self.is_first else None
        self.conv3 = conv2d(self.width * scale, out_channels, 1)
        self.bn3 = TorchStyleBatchNorm2D(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x, residual=None):
        residual = x if residual is None else residual
        out = self.relu(self.bn1(self.conv1(x)))
        splits = paddle.split(out, self.scale, axis=1)
        outs = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = splits[i] if (i == 0 or self.is_first) else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]) if self.pool is not None else splits[-1])
        out = self.bn3(self.conv3(paddle.concat(outs, axis=1)))
        return self.relu(out + residual)


BLOCKS = {'basic': BasicBlock, 'bottleneck': Bottleneck, 'res2net': Res2NetBottleneck}


class Root(nn.Layer):
    """Aggregation node: 1x1 conv + BN over the concatenated children (+ first child) + ReLU."""

    def __init__(self, in_channels, out_channels, residual):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, 1)
        self.bn = TorchStyleBatchNorm2D(out_channels)
        self.relu = nn.ReLU()
        self.residual = residual

    def forward(self, children):
        x = self.bn(self.conv(paddle.concat(children, axis=1)))
        if self.residual:
            x = x + children[0]
        return self.relu(x)


class Tree(nn.Layer):
    """Hierarchical deep aggregation tree (one DLA stage).

    Unlike the official code, ``project`` exists only where forward uses it
    (levels == 1 and in != out); the official checkpoints' other ``project``
    entries are dead weights that the converter drops.
    """

    def __init__(self, levels, block, in_channels, out_channels, stride=1, level_root=False,
                 root_dim=0, root_residual=False, **block_args):
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        self.levels = levels
        self.level_root = level_root
        # ceil_mode: the same as the official floor mode on even sizes, and on odd sizes it
        # keeps the shortcut as large as the strided conv output (the official model fails there).
        self.downsample = nn.MaxPool2D(stride, stride, ceil_mode=True) if stride > 1 else None
        self.project = None
        if levels == 1:
            self.tree1 = block(in_channels, out_channels, stride, **block_args)
            self.tree2 = block(out_channels, out_channels, 1, **block_args)
            if in_channels != out_channels:
                self.project = nn.Sequential(conv2d(in_channels, out_channels, 1),
                                             TorchStyleBatchNorm2D(out_channels))
            self.root = Root(root_dim, out_channels, root_residual)
        else:
            self.tree1 = Tree(levels - 1, block, in_channels, out_channels, stride,
                              root_residual=root_residual, **block_args)
            self.tree2 = Tree(levels - 1, block, out_channels, out_channels,
                              root_dim=root_dim + out_channels, root_residual=root_residual,
                              **block_args)
            self.root = None

    def forward(self, x, residual=None, children=None):
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = self.project(bottom) if self.project is not None else bottom
            x1 = self.tree1(x, residual)
            x2 = self.tree2(x1)
            return self.root([x2, x1] + children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)
