"""The classifiers' builder and pretrained-weight loading.

Weights arrive four ways: a registry tag (``True``, ``'official'``), a ``.pdparams`` file, or a
``.pth`` / ``.safetensors`` file converted in memory. Each is first read as a Paddle-named
state dict (:func:`pretrained_state`), then fitted to the model by the same rules
(:func:`fit_state`), then loaded strictly. The rules, whichever way the weights came:

* a checkpoint of another variant is refused in one line naming the file's variant;
* another class count than the checkpoint's classifier: everything but the classifier is
  loaded, the model's classifier is freshly initialised, and one warning says so;
* another ``in_chans`` than the checkpoint's first convolution: that convolution is adapted
  as timm adapts it (:func:`adapt_input_conv`), and one warning says so.
"""
import math
import os
import sys
import warnings

import numpy as np

from ..core import PACKAGE_DIR
from ..core.errors import UnknownName, printable
from ..models.dla import DLA
from ..models.variants import CLASSIFIER, FIRST_CONV, get_config
from ..weights.cache import cached_weights_path
from ..weights.checkpoint import StateDictMismatch, load_pdparams, load_state_dict_strict, to_numpy
from ..weights.convert.detect import detect_variants
from ..weights.convert.mapping import to_torch_key
from ..weights.convert.pipeline import VariantUnknown, convert_checkpoint, load_torch_state
from ..weights.pretrained import load_pretrained_state
from ..weights.registry import get_weights, list_weights

_PACKAGE_DIR = PACKAGE_DIR + os.sep


class VariantMismatch(StateDictMismatch):
    """The weights are a checkpoint of another DLA variant than the model's."""

    def __init__(self, context, found, wanted):
        self.found = list(found)    # the variant(s) the checkpoint fits, or the closest one
        self.wanted = wanted
        super().__init__(context=context)


def create_classifier(name, pretrained=False, **kwargs):
    """A classifier variant by name, with the weights ``pretrained`` names fitted to it:
    see :func:`paddle_dla.create_model`."""
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
    """Load the weights named by ``pretrained`` into ``model``: get them, fit them, load
    strictly.

    ``True`` or a tag (``'official'``, ``'tricks'``): the weights registry, from the cache
    or downloaded into it. A path: a ``.pdparams`` file, or a ``.pth`` / ``.safetensors``
    checkpoint converted in memory. :func:`fit_state` says what is left out and why.
    ``skip_classifier=True`` loads everything but the classifier, which keeps the model's
    own: the start of fine-tuning on other classes.
    """
    state, source, entry = pretrained_state(model, pretrained)
    state, keep_own = fit_state(model, state, entry, skip_classifier, source=source)
    return load_state_dict_strict(model, state, keep_own=keep_own,
                                  context=f'{printable(source)} does not fit '
                                          f'{model.config.name} (num_classes='
                                          f'{model.num_classes}, in_chans={model.in_chans})')


def pretrained_state(model, pretrained):
    """Get the state: ``(state dict, where it came from, registry entry or None)``.

    The state is the checkpoint's, whatever its class count or input channels: fitting it
    to ``model`` is :func:`fit_state`'s. A file of another variant is refused here when
    converting it already fails.
    """
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
        raise UnknownName(f'{model.config.name} has no {path!r} weights; tags: '
                         f'{", ".join(tags_of(model))} (or pass a file path)')
    return _converted_state(model, path), path, None


def _converted_state(model, path):
    """A ``.pth`` / ``.safetensors`` file converted in memory for the model's variant. When
    that fails because the file holds another variant, say so as for the other ways."""
    try:
        return convert_checkpoint(path, model=model.config.name).state
    except (VariantUnknown, StateDictMismatch) as exc:
        failure = exc
    # The failure path only: read the file again to name its variant.
    mismatch = _other_variant(model, load_torch_state(path), path)
    raise mismatch or failure


def _registry_entry(model, pretrained):
    if pretrained is True:
        return get_weights(model.config.name)
    if isinstance(pretrained, str) and pretrained in tags_of(model):
        return get_weights(model.config.name, pretrained)
    return None


def fit_state(model, state, entry=None, skip_classifier=False, source='the weights'):
    """Fit a full classifier checkpoint to ``model``: ``(state, prefixes the model keeps)``.

    The same for every way weights arrive (names from the registry ``entry`` if any):

    * weights of another variant raise :class:`VariantMismatch`, naming their variant;
    * dropped silently: what the model does not build (the classifier of a
      ``num_classes=0`` model, levels past a ``features_only`` model's last one);
    * the classifier is left to the model when ``skip_classifier`` asks (silently), or
      when the checkpoint's class count (its classifier's rows) differs from the model's:
      then the model's classifier is freshly initialised and a warning names the keys;
    * a first convolution for other input channels than ``model.in_chans`` is adapted as
      timm does (:func:`adapt_input_conv`), with a warning.

    Everything else must fit: the strict load that follows names what does not.
    """
    classifier = f'{entry.classifier if entry else CLASSIFIER}.'
    first_conv = f'{entry.first_conv if entry else FIRST_CONV}.weight'
    if not _fits_but_head_and_input(model, state, classifier, first_conv):
        mismatch = _other_variant(model, state, source, entry)
        if mismatch:
            raise mismatch
    state = {k: v for k, v in state.items() if not k.startswith(model.unused_checkpoint_prefixes())}
    if model.fc is not None and not skip_classifier:
        skip_classifier = _fresh_classifier_for_other_classes(model, state, classifier, source)
    state = _adapt_first_conv(model, state, first_conv, source)
    if not skip_classifier or model.fc is None:
        return state, ()
    return {k: v for k, v in state.items() if not k.startswith(classifier)}, (classifier,)


def _shape(value):
    return tuple(np.shape(value))


def _fits_but_head_and_input(model, state, classifier, first_conv):
    """Whether ``state`` has the model's keys and shapes, leaving aside the classifier, the
    first convolution's input channels and the parts the model does not build."""
    ignored = (classifier,) + model.unused_checkpoint_prefixes()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(ignored)}
    theirs = {k: _shape(v) for k, v in state.items() if not k.startswith(ignored)}
    if own.keys() != theirs.keys():
        return False
    for key, shape in own.items():
        found = theirs[key]
        if key == first_conv and len(shape) == len(found) == 4:
            shape, found = shape[:1] + shape[2:], found[:1] + found[2:]
        if shape != found:
            return False
    return True


def _other_variant(model, state, source, entry=None):
    """A :class:`VariantMismatch` if ``state`` (Paddle or torch names) is a checkpoint of
    another variant than the model's, else None (what does not fit is then the strict
    load's to report)."""
    fits, closest = detect_variants({to_torch_key(k): v for k, v in state.items()})
    name = model.config.name
    found = fits or ([closest] if closest else [])
    if not found or name in found:
        return None
    verb = 'is a' if fits else 'is closest to a'
    if entry is not None:
        hint = (f'its cached file {printable(cached_weights_path(entry.variant, entry.tag))} '
                f'holds other weights: delete it and it is fetched again')
    else:
        hint = f'load it into a {found[0]} model'
    return VariantMismatch(f'{printable(source)} {verb} {" or ".join(found)} checkpoint, '
                           f'not {name}: {hint}', found, name)


def _checkpoint_classes(state, classifier):
    """The class count of the checkpoint's classifier (its weight's rows), or None."""
    weight = state.get(f'{classifier}weight')
    shape = _shape(weight) if weight is not None else ()
    return int(shape[0]) if len(shape) == 4 else None


def _fresh_classifier_for_other_classes(model, state, classifier, source):
    """Whether to keep the model's classifier because the checkpoint's has another class
    count; if so, it is freshly initialised for fine-tuning and a warning says so."""
    classes = _checkpoint_classes(state, classifier)
    if classes is None or classes == model.num_classes:
        return False  # same classes, or none: the strict load takes or reports them
    head = sorted(k for k in state if k.startswith(classifier))
    _warn(f'{model.config.name}: pretrained classifier not loaded ({", ".join(head)}) because '
          f'{printable(source)} has {classes} classes and num_classes={model.num_classes}; '
          f'it is freshly initialised for fine-tuning')
    model.reset_classifier(model.num_classes)
    return True


def adapt_input_conv(in_chans, weight):
    """A first convolution's ``[out, in, kh, kw]`` weight adapted to ``in_chans`` inputs, as
    timm's ``adapt_input_conv`` does: summed over the input channels for one channel, else
    the 3 channels repeated ``ceil(in_chans / 3)`` times, cut to ``in_chans`` and scaled by
    ``3 / in_chans`` (so a grey or 3-channel image replicated keeps its response)."""
    weight = to_numpy(weight)
    have = weight.shape[1]
    if in_chans == have:
        return weight
    work = weight.astype(np.float32)
    if in_chans == 1:
        work = work.sum(axis=1, keepdims=True)
    elif have == 3:
        work = np.tile(work, (1, math.ceil(in_chans / 3), 1, 1))[:, :in_chans]
        work = work * np.float32(3 / in_chans)
    else:
        raise ValueError(f'a first convolution for {have} input channels cannot be adapted '
                         f'to {in_chans} (only 3 channels to any count, or any to 1)')
    return work.astype(weight.dtype)


def _adapt_first_conv(model, state, key, source):
    weight = state.get(key)
    if weight is None or len(_shape(weight)) != 4 or _shape(weight)[1] == model.in_chans:
        return state
    have, want = _shape(weight)[1], model.in_chans
    if want != 1 and have != 3:
        raise StateDictMismatch(context=f'{model.config.name} takes in_chans={want} but the '
                                f'first convolution of {printable(source)} ({key}) takes '
                                f'{have} channels, which cannot be adapted (only 3 channels '
                                f'to any count, or any count to 1)')
    how = ('summed over its input channels' if want == 1 else
           f'its 3 input channels repeated and cut to {want}, scaled by 3/{want}')
    _warn(f'{model.config.name}: pretrained first convolution ({key}) adapted from {have} to '
          f'in_chans={want} input channels as timm does: {how}')
    return {**state, key: adapt_input_conv(want, weight)}


def _warn(message):
    """A UserWarning attributed to the first caller outside this package."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level + 1)


def tags_of(model):
    return [w.tag for w in list_weights(model.config.name)]
