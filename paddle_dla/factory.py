"""``create_model`` and pretrained-weight loading: the one place that builds models."""
import os
import warnings

from .checkpoint import load_pdparams, load_state_dict_strict
from .dla import DLA
from .variants import get_config

def create_model(name, pretrained=False, **kwargs):
    """Build a DLA variant by name (ours, ``dla_60``, or timm's, ``dla60``).

    Args:
        name: variant name; see :func:`paddle_dla.list_models`.
        pretrained: ``False``; ``True`` for the default published weights (downloaded,
            verified, converted and cached on first use); a tag such as ``'tricks'``; or a
            path to a ``.pdparams``, ``.pth`` or ``.safetensors`` file, loaded strictly.
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


def load_pretrained(model, pretrained, skip_classifier=False):
    """Load the weights named by ``pretrained`` into ``model``.

    ``True`` or a tag (``'official'``, ``'tricks'``): the weights registry, from the cache
    or downloaded into it; with another ``num_classes`` everything but the classifier is
    loaded, the classifier is freshly initialised, and a warning names the skipped keys.
    A path: a ``.pdparams`` file, or a ``.pth`` / ``.safetensors`` checkpoint converted in
    memory, loaded strictly. Keys this model does not build (the classifier of a
    ``num_classes=0`` or ``features_only`` model) are left out. ``skip_classifier=True``
    loads everything but the classifier, which keeps the model's own: the start of
    fine-tuning on other classes.
    """
    from_registry = pretrained is True or (isinstance(pretrained, str)
                                           and pretrained in tags_of(model))
    if from_registry:
        from .pretrained import load_pretrained_state
        tag = None if pretrained is True else pretrained
        state = load_pretrained_state(model.config.name, tag)
        source = f'pretrained {model.config.name}'
    else:
        state, source = _read_weights_file(model, pretrained)
    skipped = model.unused_checkpoint_prefixes() + (('fc.',) if skip_classifier else ())
    state = {k: v for k, v in state.items() if not k.startswith(skipped)}
    own = model.state_dict()
    head = sorted(k for k in state if k.startswith('fc.') and k in own
                  and tuple(own[k].shape) != tuple(state[k].shape))
    if from_registry and head:
        warnings.warn(f'{model.config.name}: pretrained classifier not loaded '
                      f'({", ".join(head)}) because num_classes={model.num_classes}; it is '
                      f'freshly initialised for fine-tuning', stacklevel=3)
        model.reset_classifier(model.num_classes)
        skip_classifier = True
    if skip_classifier:
        state.update({k: v for k, v in model.state_dict().items() if k.startswith('fc.')})
    return load_state_dict_strict(model, state, context=f'{source} does not fit '
                                  f'{model.config.name} (num_classes={model.num_classes})')


def _read_weights_file(model, pretrained):
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f'pretrained must be True, False, a tag ({", ".join(tags_of(model))}) '
                        f'or a path to a .pdparams/.pth/.safetensors file, got {pretrained!r}')
    path = os.fspath(pretrained)
    if path.endswith('.pdparams'):
        return load_pdparams(path), path
    if not os.path.exists(path) and os.sep not in path and '.' not in path:
        raise ValueError(f'{model.config.name} has no {path!r} weights; tags: '
                         f'{", ".join(tags_of(model))} (or pass a file path)')
    from .convert.pipeline import convert_checkpoint
    return convert_checkpoint(path, model=model.config.name).state, path


def tags_of(model):
    from .weights import list_weights
    return [w.tag for w in list_weights(model.config.name)]
