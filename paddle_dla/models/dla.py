"""The DLA network: classifier, headless feature extractor and multi-level backbone."""
import paddle
import paddle.nn as nn

from .blocks import BLOCKS, Tree
from .imagenet import NUM_CLASSES
from .layers import TorchStyleBatchNorm2D, conv2d
from .variants import CLASSIFIER

NUM_LEVELS = 6
DEFAULT_OUT_INDICES = (1, 2, 3, 4, 5)


class FeatureInfo(list):
    """Per-level ``dict(num_chs, reduction, module)`` entries, with timm-style accessors."""

    def channels(self):
        return [f['num_chs'] for f in self]

    def reduction(self):
        return [f['reduction'] for f in self]

    def module_name(self):
        return [f['module'] for f in self]


class DLA(nn.Layer):
    """Deep Layer Aggregation.

    Layer names mirror the official PyTorch module names (``base_layer``,
    ``level0``..``level5``, ``fc``), so checkpoint keys map one to one.

    Args:
        config: a :class:`paddle_dla.models.variants.DLAConfig`.
        num_classes: classifier outputs; 0 removes the classifier and the model
            returns pooled features.
        in_chans: input image channels.
        drop_rate: dropout before the classifier.
        with_pool: global average pooling before the classifier. Without it the
            1x1-conv classifier runs on every position (dense logits).
        features_only: return the outputs of the levels in ``out_indices``
            instead of logits (a backbone for detection or segmentation); levels
            past the last requested one and the head are not built.
        out_indices: levels to return with ``features_only``.
    """

    def __init__(self, config, num_classes=NUM_CLASSES, in_chans=3, drop_rate=0.0, with_pool=True,
                 features_only=False, out_indices=DEFAULT_OUT_INDICES):
        super().__init__()
        self.config = config
        self.in_chans = in_chans
        self.features_only = features_only
        channels, levels = config.channels, config.levels
        self.base_layer = nn.Sequential(conv2d(in_chans, channels[0], 7, 1, 3),
                                        TorchStyleBatchNorm2D(channels[0]), nn.ReLU())
        all_info = [dict(num_chs=channels[i], reduction=2 ** i, module=f'level{i}')
                    for i in range(NUM_LEVELS)]
        if features_only:
            out_indices = tuple(out_indices)
            if not out_indices or any(i not in range(NUM_LEVELS) for i in out_indices):
                raise ValueError(f'out_indices must be levels in 0..{NUM_LEVELS - 1}, '
                                 f'got {out_indices}')
            self.out_indices = out_indices
            last_level = max(out_indices)
            self.feature_info = FeatureInfo(all_info[i] for i in out_indices)
        else:
            self.out_indices = ()
            last_level = NUM_LEVELS - 1
            self.feature_info = FeatureInfo(all_info)
        self.num_levels_built = last_level + 1

        block, block_args = BLOCKS[config.block], config.block_options
        for i in range(self.num_levels_built):
            if i < 2:
                level = self._conv_level(channels[max(i - 1, 0)], channels[i], levels[i],
                                         stride=1 if i == 0 else 2)
            else:
                level = Tree(levels[i], block, channels[i - 1], channels[i], stride=2,
                             level_root=i > 2, root_residual=config.residual_root, **block_args)
            setattr(self, f'level{i}', level)

        self.num_features = channels[-1]
        self.num_classes = 0
        self.drop_rate = drop_rate
        self.with_pool = with_pool
        self.global_pool = None
        self.head_drop = None
        self.fc = None
        if not features_only:
            self.global_pool = nn.AdaptiveAvgPool2D(1) if with_pool else None
            self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else None
            self._set_classifier(num_classes, fan_in_init=False)

    @staticmethod
    def _conv_level(in_channels, out_channels, n_convs, stride):
        layers = []
        for i in range(n_convs):
            layers += [conv2d(in_channels, out_channels, 3, stride if i == 0 else 1, 1),
                       TorchStyleBatchNorm2D(out_channels), nn.ReLU()]
            in_channels = out_channels
        return nn.Sequential(*layers)

    # -- classifier --------------------------------------------------------------------
    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes):
        """Replace the classifier by a fresh one (0 removes it), initialised as PyTorch and
        timm initialise a new head (uniform in +-1/sqrt(fan_in)), for fine-tuning."""
        self._set_classifier(num_classes, fan_in_init=True)

    def _set_classifier(self, num_classes, fan_in_init):
        if self.features_only:
            raise RuntimeError('a features_only model has no classifier')
        if num_classes < 0:
            raise ValueError(f'num_classes must be >= 0, got {num_classes}')
        self.num_classes = num_classes
        self.fc = (conv2d(self.num_features, num_classes, 1, bias=True, fan_in_init=fan_in_init)
                   if num_classes else None)

    # -- forward -----------------------------------------------------------------------
    def _levels(self):
        return [getattr(self, f'level{i}') for i in range(self.num_levels_built)]

    def forward_features(self, x):
        """Feature map of the last level: [N, num_features, H/32, W/32]."""
        x = self.base_layer(x)
        for level in self._levels():
            x = level(x)
        return x

    def forward_head(self, x, pre_logits=False):
        """Pool, dropout and classify; ``pre_logits=True`` stops before the classifier."""
        if self.global_pool is not None:
            x = self.global_pool(x)
        if self.head_drop is not None:
            x = self.head_drop(x)
        if not pre_logits and self.fc is not None:
            x = self.fc(x)
        return paddle.flatten(x, 1) if self.global_pool is not None else x

    def forward(self, x):
        if self.features_only:
            x = self.base_layer(x)
            outs = []
            for i, level in enumerate(self._levels()):
                x = level(x)
                if i in self.out_indices:
                    outs.append(x)
            return outs
        return self.forward_head(self.forward_features(x))

    def unused_checkpoint_prefixes(self):
        """Key prefixes of a full classifier checkpoint that this model does not build."""
        head = (f'{CLASSIFIER}.',) if self.fc is None else ()
        return head + tuple(f'level{i}.' for i in range(self.num_levels_built, NUM_LEVELS))
