"""Deep Layer Aggregation (DLA) ImageNet classifiers and backbones for PaddlePaddle.

Importing the package is cheap: Paddle and the model code load on first use of a name
below (``paddle_dla.create_model``, ``paddle_dla.dla_34``, ...), so that command lines
answer ``--help`` at once.
"""
import importlib
import warnings

try:  # Paddle 2.6 ships its own zlib; Pillow's image decoders must load theirs first
    import PIL.Image  # noqa: F401
except ImportError:
    pass

from .dense_variants import DENSE_VARIANTS
from .variants import VARIANTS, DLAConfig, get_config, list_models, resolve_name

__version__ = '0.1.0'

# Paddle warns on import about a C++ build cache that only its extension builder uses.
warnings.filterwarnings('ignore', message='No ccache found')

_LAZY = {'DLA': 'dla', 'FeatureInfo': 'dla', 'create_model': 'factory',
         'StateDictMismatch': 'checkpoint', 'load_state_dict_strict': 'checkpoint'}

__all__ = ['DLA', 'DLAConfig', 'FeatureInfo', 'StateDictMismatch', 'VARIANTS', 'create_model',
           'get_config', 'list_models', 'load_state_dict_strict', 'resolve_name', *VARIANTS,
           *DENSE_VARIANTS]


def _factory(name, doc):
    def build(pretrained=False, **kwargs):
        return __getattr__('create_model')(name, pretrained=pretrained, **kwargs)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


for _name, _cfg in VARIANTS.items():
    globals()[_name] = _factory(_name, (
        f'{_name} (official name {_cfg.official_name}): levels {_cfg.levels}, channels '
        f'{_cfg.channels}, {_cfg.block} blocks.\n\nSame arguments as '
        f':func:`paddle_dla.create_model`.'))
for _name, _cfg in DENSE_VARIANTS.items():
    globals()[_name] = _factory(_name, (
        f'{_name}: {_cfg.task} over {_cfg.backbone} ({_cfg.reference}).\n\nSame arguments '
        f'as :func:`paddle_dla.dense_factory.create_dense_model`.'))


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
