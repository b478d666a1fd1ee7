"""``create_model`` and pretrained-weight loading: the one place that builds models."""
import os

from .checkpoint import load_pdparams, load_state_dict_strict
from .dla import DLA
from .variants import get_config

WEIGHT_TAGS = ('official', 'tricks')


def create_model(name, pretrained=False, **kwargs):
    """Build a DLA variant by name (ours, ``dla_60``, or timm's, ``dla60``).

    Args:
        name: variant name; see :func:`paddle_dla.list_models`.
        pretrained: ``False``; or a path to a ``.pdparams`` file, loaded strictly.
        **kwargs: ``num_classes`` (alias ``class_dim``), ``in_chans``, ``drop_rate``,
            ``with_pool``, ``features_only``, ``out_indices``.
    """
    config = get_config(name)
    if 'class_dim' in kwargs:
        class_dim = kwargs.pop('class_dim')
        if 'num_classes' in kwargs and kwargs['num_classes'] != class_dim:
            raise TypeError(f'class_dim={class_dim} and num_classes={kwargs["num_classes"]} '
                            f'disagree; pass only num_classes')
        kwargs['num_classes'] = class_dim
    model = DLA(config, **kwargs)
    if pretrained is not False and pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def load_pretrained(model, pretrained):
    """Load weights named by ``pretrained`` into ``model``, strictly."""
    if pretrained is True or (isinstance(pretrained, str) and pretrained in WEIGHT_TAGS):
        raise NotImplementedError(
            f'downloading pretrained {model.config.name} weights is not available yet. '
            f'Convert a checkpoint yourself: python convert/torch2paddle.py --src '
            f'{model.config.official_name}.pth --model {model.config.name} --dst '
            f'{model.config.name}.pdparams, then pass pretrained="{model.config.name}.pdparams".')
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f'pretrained must be False or a path to a .pdparams file, '
                        f'got {pretrained!r}')
    state = load_pdparams(pretrained)
    skipped = model.unused_checkpoint_prefixes()
    if skipped:
        state = {k: v for k, v in state.items() if not k.startswith(skipped)}
    return load_state_dict_strict(model, state,
                                  context=f'{os.fspath(pretrained)} does not fit {model.config.name}'
                                          f' (num_classes={model.num_classes})')
