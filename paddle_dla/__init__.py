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


def _factory(name):
    def build(pretrained=False, **kwargs):
        return __getattr__('create_model')(name, pretrained=pretrained, **kwargs)
    cfg = VARIANTS[name]
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f'{name} (official name {cfg.official_name}): levels {cfg.levels}, '
                     f'channels {cfg.channels}, {cfg.block} blocks.\n\n'
                     f'Same arguments as :func:`paddle_dla.create_model`.')
    return build


for _name in VARIANTS:
    globals()[_name] = _factory(_name)


def _dense_factory(name):
    def build(pretrained=False, **kwargs):
        return __getattr__('create_model')(name, pretrained=pretrained, **kwargs)
    cfg = DENSE_VARIANTS[name]
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f'{name}: {cfg.task} over {cfg.backbone} ({cfg.reference}).\n\n'
                     f'Same arguments as :func:`paddle_dla.dense_factory.create_dense_model`.')
    return build


for _name in DENSE_VARIANTS:
    globals()[_name] = _dense_factory(_name)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
