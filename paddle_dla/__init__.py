"""Deep Layer Aggregation (DLA) for PaddlePaddle: ImageNet classifiers and backbones, and the
CenterNet, FairMOT and DLA-Up dense networks over them.

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

from .core import __version__
from .core.errors import PaddleDLAError
from .models.dense_variants import DENSE_VARIANTS
from .models.registry import MODELS, get_model, list_models
from .models.variants import VARIANTS, DLAConfig, get_config, resolve_name


# Paddle warns on import about a C++ build cache that only its extension builder uses.
warnings.filterwarnings('ignore', message='No ccache found')

_LAZY = {'DLA': 'models.dla', 'FeatureInfo': 'models.dla', 'create_model': 'zoo.factory',
         'load_pretrained': 'zoo.classifier', 'StateDictMismatch': 'weights.checkpoint',
         'load_state_dict_strict': 'weights.checkpoint'}

__all__ = ['DLA', 'DLAConfig', 'FeatureInfo', 'MODELS', 'PaddleDLAError', 'StateDictMismatch',
           'VARIANTS', 'create_model', 'get_config', 'get_model', 'list_models',
           'load_pretrained', 'load_state_dict_strict', 'resolve_name', *MODELS]


def _factory(name, doc):
    def build(pretrained=False, **kwargs):
        return __getattr__('create_model')(name, pretrained=pretrained, **kwargs)
    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


for _entry in MODELS.values():
    globals()[_entry.name] = _factory(_entry.name, f'{_entry.summary}.\n\nSame arguments as '
                                                   f':func:`paddle_dla.create_model`.')


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
