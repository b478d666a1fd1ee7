"""Deep Layer Aggregation (DLA) ImageNet classifiers and backbones for PaddlePaddle."""
import warnings

try:  # Paddle 2.6 ships its own zlib; Pillow's image decoders must load theirs first
    import PIL.Image  # noqa: F401
except ImportError:
    pass

with warnings.catch_warnings():
    # Paddle warns on import about a C++ build cache that only its extension builder uses.
    warnings.filterwarnings('ignore', message='No ccache found')
    import paddle  # noqa: F401

from .checkpoint import StateDictMismatch, load_state_dict_strict
from .dla import DLA, FeatureInfo
from .factory import create_model
from .variants import VARIANTS, DLAConfig, get_config, list_models, resolve_name

__version__ = '0.1.0'


def _factory(name):
    def build(pretrained=False, **kwargs):
        return create_model(name, pretrained=pretrained, **kwargs)
    cfg = VARIANTS[name]
    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f'{name} (official name {cfg.official_name}): levels {cfg.levels}, '
                     f'channels {cfg.channels}, {cfg.block} blocks.\n\n'
                     f'Same arguments as :func:`paddle_dla.create_model`.')
    return build


for _name in VARIANTS:
    globals()[_name] = _factory(_name)

__all__ = ['DLA', 'DLAConfig', 'FeatureInfo', 'StateDictMismatch', 'VARIANTS', 'create_model',
           'get_config', 'list_models', 'load_state_dict_strict', 'resolve_name', *VARIANTS]
