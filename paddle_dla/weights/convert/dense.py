"""Dense checkpoints (CenterNet / FairMOT ``DLASeg``, ucbdrive DLA-Up segmentation) to
strict Paddle state dicts.

What the files hold beyond the network (REFERENCE §6): the backbone's ImageNet classifier
``base.fc`` and the official backbone's dead ``project`` entries, which forward never
uses: both are dropped and counted. Everything else must map, key for key and shape for
shape, onto the model the keys describe: its backbone, its heads in the file's order
(CenterNet) or its class count (segmentation).
"""
import functools
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import paddle

from ...core.errors import PaddleDLAError, printable
from ...models.dense import CenterNetDLA, DLAUpSegmentation
from ...models.dense_variants import DENSE_VARIANTS, get_dense_config
from ...models.dla import DLA, NUM_LEVELS
from ...models.registry import DENSE_FAMILY, get_model
from ...models.variants import get_config
from ..checkpoint import StateDictMismatch, check_state_dict, to_numpy
from .layouts import drop_dead_keys, unwrap_state_dict
from .mapping import TORCH_ONLY_LEAVES, to_paddle_key, to_torch_key
from .readers import read_checkpoint

BACKBONE = 'base.'
BACKBONE_CLASSIFIER = 'base.fc.'
NECK_PREFIXES = ('base.', 'dla_up.', 'ida_up.')
_BACKBONES = list(dict.fromkeys(c.backbone for c in DENSE_VARIANTS.values()))


class NotDense(PaddleDLAError, ValueError):
    """The checkpoint is not one of the dense networks."""


@dataclass
class DenseConversion:
    state: dict                     # Paddle keys -> float32 numpy arrays
    name: str                       # the create_model name, e.g. ``centernet_dla34``
    heads: dict = field(default_factory=dict)   # CenterNet-style heads, file order
    head_conv: int = 0
    num_classes: int = 0            # segmentation classes
    epoch: Optional[int] = None
    arch: Optional[str] = None
    classifier_dropped: int = 0     # base.fc tensors
    dead_keys_dropped: int = 0
    source_path: str = ''

    @property
    def config(self):
        return get_dense_config(self.name)

    @property
    def num_params(self):
        return int(sum(v.size for k, v in self.state.items()
                       if not k.endswith(('._mean', '._variance'))))

    def model_kwargs(self):
        """What ``create_model(self.name, ...)`` needs to build this network."""
        if self.heads:
            return {'heads': dict(self.heads), 'head_conv': self.head_conv}
        return {'num_classes': self.num_classes}

    def describe(self):
        """e.g. ``CenterNet DLA-34, heads hm 80 / wh 2 / reg 2, epoch 140``."""
        backbone = self.config.backbone.replace('dla_', 'DLA-')
        if self.heads:
            family = 'FairMOT' if self.name.startswith('fairmot') else 'CenterNet'
            what = (f'{family} {backbone}, heads '
                    + ' / '.join(f'{h} {c}' for h, c in self.heads.items()))
        else:
            what = f'DLA-Up segmentation {backbone} ({self.name}), {self.num_classes} classes'
        return what + (f', epoch {self.epoch}' if self.epoch is not None else '')


def looks_dense(state):
    """Whether a torch-named state dict is a dense network over a DLA ``base``."""
    return any(k.startswith(BACKBONE) for k in state) and any(
        k.startswith('dla_up.') for k in state)


def heads_in(state):
    """``{head: channels}`` in the file's order, and the hidden width, from the keys that
    are neither backbone nor neck (``{head}.0.weight``, ``{head}.2.weight``)."""
    heads, head_conv = {}, 0
    for key in state:
        if key.startswith(NECK_PREFIXES) or not key.endswith('.2.weight'):
            continue
        name = key[:-len('.2.weight')]
        hidden = state.get(f'{name}.0.weight')
        if '.' in name or hidden is None or np.ndim(hidden) != 4 or np.ndim(state[key]) != 4:
            continue
        heads[name] = int(np.shape(state[key])[0])
        head_conv = int(np.shape(hidden)[0])
    return heads, head_conv


@functools.lru_cache(maxsize=None)
def _expected(name, heads, head_conv, num_classes):
    """``{torch key: shape}`` of the Paddle network, built lazily (no parameter
    initialised)."""
    config = get_dense_config(name)
    with paddle.LazyGuard():
        if config.is_centernet:
            model = CenterNetDLA(config, heads=heads, head_conv=head_conv)
        else:
            model = DLAUpSegmentation(config, num_classes=num_classes)
    return {to_torch_key(k): tuple(v.shape) for k, v in model.state_dict().items()}


def expected_dense_shapes(name, heads=(), head_conv=256, num_classes=19):
    """``{torch key: shape}`` of dense model ``name`` with these heads or classes."""
    return _expected(name, tuple(heads), head_conv, num_classes)


@functools.lru_cache(maxsize=None)
def _backbone_shapes(variant):
    with paddle.LazyGuard():
        base = DLA(get_config(variant), features_only=True, out_indices=(NUM_LEVELS - 1,))
    return {BACKBONE + to_torch_key(k): tuple(v.shape) for k, v in base.state_dict().items()}


def _without_extras(state, backbone):
    """The state without the backbone's classifier (``base.fc.weight`` and ``.bias``, as
    a 1x1 conv over its last level) and its dead projects (all of them or none):
    ``(state, classifier tensors dropped, dead tensors dropped)``."""
    last = get_config(backbone).channels[-1]
    weight, bias = state.get(BACKBONE_CLASSIFIER + 'weight'), state.get(BACKBONE_CLASSIFIER + 'bias')
    classifier = []
    if weight is not None and np.ndim(weight) == 4 and tuple(np.shape(weight)[1:]) == (last, 1, 1):
        classifier.append(BACKBONE_CLASSIFIER + 'weight')
        if bias is not None and tuple(np.shape(bias)) == tuple(np.shape(weight)[:1]):
            classifier.append(BACKBONE_CLASSIFIER + 'bias')
    base = {k[len(BACKBONE):]: v for k, v in state.items()
            if k.startswith(BACKBONE) and k not in classifier}
    base_kept, dead = drop_dead_keys(base, backbone)
    kept = {k: v for k, v in state.items() if not k.startswith(BACKBONE)}
    kept.update((BACKBONE + k, v) for k, v in base_kept.items())
    return kept, len(classifier), dead


def family_of(heads, backbone='dla_34'):
    """The dense model a CenterNet-style file of these heads is: FairMOT's has ``id``."""
    names = [c.name for c in DENSE_VARIANTS.values() if c.is_centernet and c.backbone == backbone]
    return next((n for n in names if ('id' in heads) == ('id' in dict(
        get_dense_config(n).heads))), names[0] if names else None)


def _backbone_of(state):
    """The backbone all of whose keys the ``base.*`` entries hold, with its shapes, or
    None. (Entries beyond them are the strict check's to name.)"""
    for backbone in _BACKBONES:
        kept, _, _ = _without_extras(state, backbone)
        if all(k in kept and tuple(np.shape(kept[k])) == s
               for k, s in _backbone_shapes(backbone).items()):
            return backbone
    return None


def _recognise(state):
    """``(name, heads, head_conv, num_classes, backbone)`` the keys describe."""
    backbone = _backbone_of(state)
    if backbone is None:
        raise NotDense(f'its base.* keys fit no DLA backbone of the dense models '
                       f'({", ".join(_BACKBONES)})')
    heads, head_conv = heads_in(state)
    if heads:
        name, num_classes = family_of(heads, backbone), 0
        offered = [c.name for c in DENSE_VARIANTS.values() if c.is_centernet]
    else:
        weight = state.get('fc.0.weight')
        if weight is None or np.ndim(weight) != 4:
            raise NotDense('it has neither CenterNet-style heads ({head}.0 and {head}.2 '
                           'convolutions) nor a DLA-Up classifier (fc.0)')
        num_classes = int(np.shape(weight)[0])
        channels = get_config(backbone).channels
        reads = int(np.shape(weight)[1])
        if reads != channels[1] and reads in channels:
            raise NotDense(f'its classifier reads the {reads}-channel level: a DLA-Up trained '
                           f'with --down {2 ** channels.index(reads)}; only --down 2 (the '
                           f'default of segment.py) is supported')
        name = next((c.name for c in DENSE_VARIANTS.values()
                     if not c.is_centernet and c.backbone == backbone), None)
        offered = [c.name for c in DENSE_VARIANTS.values() if not c.is_centernet]
    if name is None:
        raise NotDense(f'a {"CenterNet" if heads else "DLA-Up"} network over {backbone} is not '
                       f'among the dense models ({", ".join(offered)})')
    return name, heads, head_conv, num_classes, backbone


def convert_dense_state(raw, source='checkpoint', model=None, dtype='float32'):
    """A read checkpoint object (wrapper dict or state dict) -> :class:`DenseConversion`
    holding ``dtype`` arrays."""
    meta = raw if isinstance(raw, dict) else {}
    state = {str(k): to_numpy(v) for k, v in unwrap_state_dict(raw, source).items()}
    state = {k: v for k, v in state.items() if k.rpartition('.')[2] not in TORCH_ONLY_LEAVES}
    if not looks_dense(state):
        raise NotDense(f'{source} is not a dense DLA checkpoint (no base.* and dla_up.* keys)')
    try:
        name, heads, head_conv, num_classes, backbone = _recognise(state)
        expected = expected_dense_shapes(name, tuple(heads.items()), head_conv, num_classes)
    except (NotDense, ValueError) as exc:  # ValueError: heads the network cannot have
        raise NotDense(f'{source}: {exc}') from None
    if model is not None and get_dense_config(model).name != name:
        raise NotDense(f'{source} is a {name} checkpoint, not {get_dense_config(model).name}: '
                       f'pass --model {name} or leave --model out')
    arch = meta.get('arch') if isinstance(meta.get('arch'), str) else None
    if arch and not heads and arch.lower() != name:
        raise NotDense(f'{source} says arch {printable(arch)} but its keys are a {name}')
    kept, classifier, dead = _without_extras(state, backbone)
    check_state_dict(expected, kept, context=f'{source} does not match {name}')
    not_float = [printable(k) for k in expected if not np.issubdtype(kept[k].dtype, np.floating)]
    if not_float:
        raise StateDictMismatch(context=f'{source} does not match {name}: tensors that are '
                                f'not floating point where parameters belong: '
                                f'{", ".join(not_float[:8])}')
    epoch = meta.get('epoch')
    return DenseConversion(
        state={to_paddle_key(k): kept[k].astype(dtype) for k in expected},
        name=name, heads=heads, head_conv=head_conv, num_classes=num_classes,
        epoch=int(epoch) if isinstance(epoch, (int, np.integer)) and not isinstance(
            epoch, bool) else None,
        arch=arch, classifier_dropped=classifier, dead_keys_dropped=dead)


def convert_dense_checkpoint(path, model=None, raw=None):
    """Read (unless ``raw`` is the file's content already) and convert one dense file."""
    path = os.fspath(path)
    if raw is None:
        raw = read_checkpoint(path)
    conversion = convert_dense_state(raw, printable(path), model)
    conversion.source_path = path
    return conversion


def dense_checkpoint_or_none(path, model=None):
    """``(DenseConversion, None)`` when ``path`` is a dense checkpoint (or ``model`` names a
    dense network); else ``(None, the file's content or None)``, for the classifier
    pipeline to take without reading the file again."""
    if model is not None and _family(model) != DENSE_FAMILY:
        return None, None
    path = os.fspath(path)
    if model is None and (os.path.isdir(path) or not os.path.isfile(path)):
        return None, None
    raw = read_checkpoint(path)
    if model is None:
        try:
            keys = unwrap_state_dict(raw, printable(path))
        except PaddleDLAError:
            return None, raw  # the classifier pipeline names what is wrong
        if not looks_dense(keys):
            return None, raw
    return convert_dense_checkpoint(path, model, raw), None


def _family(name):
    """The registry family of ``name``, or None for a name the registry does not know (the
    classifier pipeline then says what is wrong with it)."""
    try:
        return get_model(name).family
    except ValueError:
        return None
