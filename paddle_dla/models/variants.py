"""The twelve DLA architectures: one declarative row each, the only place they are defined.

Every other fact about a variant (its factory, its timm/official name, its
parameter count, its dead checkpoint keys) is derived from these rows.
"""
import difflib
from dataclasses import dataclass
from typing import Tuple

from ..core.errors import UnknownName
from .imagenet import NUM_CLASSES

CLASSIFIER = 'fc'           # the classifier's name: a 1x1 convolution, as in the official code
FIRST_CONV = 'base_layer.0'  # the convolution that sees the input channels


def state_num_classes(state, default=NUM_CLASSES):
    """The class count of a (Paddle- or torch-named) DLA state dict, from its classifier."""
    weight = state.get(f'{CLASSIFIER}.weight')
    return int(weight.shape[0]) if weight is not None and len(weight.shape) == 4 else default


@dataclass(frozen=True)
class DLAConfig:
    """Architecture of one variant (Yu et al., CVPR 2018, Table 1)."""

    name: str                 # our name, e.g. ``dla_60``
    official_name: str        # name of the official / timm checkpoint, e.g. ``dla60``
    levels: Tuple[int, ...]
    channels: Tuple[int, ...]
    block: str                # 'basic', 'bottleneck' or 'res2net'
    cardinality: int = 1
    base_width: int = 64
    residual_root: bool = False
    scale: int = 1            # Res2Net split count (res2net blocks only)

    @property
    def block_options(self):
        """The keyword arguments this variant's block takes beyond its channels and stride."""
        if self.block == 'basic':
            return {}
        options = dict(cardinality=self.cardinality, base_width=self.base_width)
        return {**options, 'scale': self.scale} if self.block == 'res2net' else options


_WIDE = (16, 32, 128, 256, 512, 1024)
_COMPACT = (16, 32, 64, 64, 128, 256)

VARIANTS = {c.name: c for c in (
    DLAConfig('dla_34', 'dla34', (1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), 'basic'),
    DLAConfig('dla_46_c', 'dla46_c', (1, 1, 1, 2, 2, 1), _COMPACT, 'bottleneck'),
    DLAConfig('dla_46x_c', 'dla46x_c', (1, 1, 1, 2, 2, 1), _COMPACT, 'bottleneck', cardinality=32, base_width=4),
    DLAConfig('dla_60x_c', 'dla60x_c', (1, 1, 1, 2, 3, 1), _COMPACT, 'bottleneck', cardinality=32, base_width=4),
    DLAConfig('dla_60', 'dla60', (1, 1, 1, 2, 3, 1), _WIDE, 'bottleneck'),
    DLAConfig('dla_60x', 'dla60x', (1, 1, 1, 2, 3, 1), _WIDE, 'bottleneck', cardinality=32, base_width=4),
    DLAConfig('dla_102', 'dla102', (1, 1, 1, 3, 4, 1), _WIDE, 'bottleneck', residual_root=True),
    DLAConfig('dla_102x', 'dla102x', (1, 1, 1, 3, 4, 1), _WIDE, 'bottleneck', cardinality=32, base_width=4,
              residual_root=True),
    DLAConfig('dla_102x2', 'dla102x2', (1, 1, 1, 3, 4, 1), _WIDE, 'bottleneck', cardinality=64, base_width=4,
              residual_root=True),
    DLAConfig('dla_169', 'dla169', (1, 1, 2, 3, 5, 1), _WIDE, 'bottleneck', residual_root=True),
    DLAConfig('dla_60_res2net', 'dla60_res2net', (1, 1, 1, 2, 3, 1), _WIDE, 'res2net', base_width=28,
              scale=4),
    DLAConfig('dla_60_res2next', 'dla60_res2next', (1, 1, 1, 2, 3, 1), _WIDE, 'res2net', cardinality=8,
              base_width=4, scale=4),
)}

# Classifier names accepted on input: ours and the official/timm ones (canonical spelling).
_ALIASES = {}
for _cfg in VARIANTS.values():
    _ALIASES[_cfg.name] = _cfg.name
    _ALIASES[_cfg.official_name] = _cfg.name


def canonical_spelling(name):
    """How a typed model name is compared: stripped, lower case, '-' read as '_'."""
    return str(name).strip().lower().replace('-', '_')


def resolve_name(name):
    """Map any accepted spelling (``dla_60``, ``dla60``, ``DLA-60``) to our variant name."""
    key = canonical_spelling(name)
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, list(_ALIASES), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ''
    raise UnknownName(f"unknown DLA variant {name!r}.{hint} "
                     f"Known variants: {', '.join(VARIANTS)}.")


def get_config(name):
    return VARIANTS[resolve_name(name)]
