"""``create_model`` and pretrained-weight loading: the one place that builds models."""
import os
import warnings

from .checkpoint import StateDictMismatch, load_pdparams, load_state_dict_strict
from .convert.pipeline import convert_checkpoint
from .dla import CLASSIFIER, DLA, FIRST_CONV
from .pretrained import load_pretrained_state
from .variants import get_config
from .weights import get_weights, list_weights


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
    """Load the weights named by ``pretrained`` into ``model``, strictly.

    ``True`` or a tag (``'official'``, ``'tricks'``): the weights registry, from the cache
    or downloaded into it; with another ``num_classes`` everything but the classifier is
    loaded, the classifier is freshly initialised, and a warning names the skipped keys.
    A path: a ``.pdparams`` file, or a ``.pth`` / ``.safetensors`` checkpoint converted in
    memory. ``skip_classifier=True`` loads everything but the classifier, which keeps the
    model's own: the start of fine-tuning on other classes.
    """
    state, source, entry = pretrained_state(model, pretrained)
    state, keep_own = fit_state(model, state, entry, skip_classifier)
    return load_state_dict_strict(model, state, keep_own=keep_own,
                                  context=f'{source} does not fit {model.config.name} '
                                          f'(num_classes={model.num_classes}, '
                                          f'in_chans={model.in_chans})')


def pretrained_state(model, pretrained):
    """Get the state: ``(state dict, where it came from, registry entry or None)``."""
    entry = _registry_entry(model, pretrained)
    if entry is not None:
        return (load_pretrained_state(entry.variant, entry.tag),
                f'pretrained {entry.name}', entry)
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(f'pretrained must be True, False, a tag ({", ".join(tags_of(model))}) '
                        f'or a path to a .pdparams/.pth/.safetensors file, got {pretrained!r}')
    path = os.fspath(pretrained)
    if path.endswith('.pdparams'):
        return load_pdparams(path), path, None
    if not os.path.exists(path) and os.sep not in path and '.' not in path:
        raise ValueError(f'{model.config.name} has no {path!r} weights; tags: '
                         f'{", ".join(tags_of(model))} (or pass a file path)')
    return convert_checkpoint(path, model=model.config.name).state, path, None


def _registry_entry(model, pretrained):
    if pretrained is True:
        return get_weights(model.config.name)
    if isinstance(pretrained, str) and pretrained in tags_of(model):
        return get_weights(model.config.name, pretrained)
    return None


def fit_state(model, state, entry=None, skip_classifier=False):
    """Fit a full classifier checkpoint to ``model``: ``(state, prefixes the model keeps)``.

    Drops what the model does not build (the classifier of a ``num_classes=0`` model,
    levels past a ``features_only`` model's last one). The classifier (named by the
    registry entry) is left to the model when ``skip_classifier`` asks, or when published
    weights have another class count, which a warning says. Everything else must fit.
    """
    classifier = f'{entry.classifier if entry else CLASSIFIER}.'
    state = {k: v for k, v in state.items() if not k.startswith(model.unused_checkpoint_prefixes())}
    if entry is not None and model.fc is not None and not skip_classifier and \
            entry.num_classes != model.num_classes:
        head = sorted(k for k in state if k.startswith(classifier))
        warnings.warn(f'{model.config.name}: pretrained classifier not loaded '
                      f'({", ".join(head)}) because num_classes={model.num_classes}; it is '
                      f'freshly initialised for fine-tuning', stacklevel=3)
        model.reset_classifier(model.num_classes)
        skip_classifier = True
    _check_first_conv(model, state, entry)
    if not skip_classifier or model.fc is None:
        return state, ()
    return {k: v for k, v in state.items() if not k.startswith(classifier)}, (classifier,)


def _check_first_conv(model, state, entry):
    """Name an input-channel mismatch as such, rather than as one mis-shaped key."""
    key = f'{entry.first_conv if entry else FIRST_CONV}.weight'
    if key in state and len(state[key].shape) == 4 and state[key].shape[1] != model.in_chans:
        raise StateDictMismatch(context=f'{model.config.name} takes in_chans={model.in_chans} '
                                f'but the weights\' first convolution ({key}) takes '
                                f'{state[key].shape[1]} channels')


def tags_of(model):
    return [w.tag for w in list_weights(model.config.name)]
