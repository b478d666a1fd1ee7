"""``create_model`` for the dense networks: build one by name, load a checkpoint strictly.

A CenterNet / FairMOT file says which heads it has, and a DLA-Up file how many classes:
unless the caller names them, the model is built to match the file (an older FairMOT
release has ``wh 2 / id 512``), so scripts written against the reference load by name.
"""
import os

import numpy as np

from ..core.errors import UnknownName, printable
from ..models.dense import CenterNetDLA, DLAUpSegmentation
from ..models.dense_variants import get_dense_config
from ..weights.checkpoint import StateDictMismatch, load_pdparams, load_state_dict_strict
from ..weights.convert.dense import convert_dense_checkpoint, family_of, heads_in
from ..weights.convert.mapping import to_torch_key


def create_dense_model(name, pretrained=False, heads=None, head_conv=None, num_classes=None,
                       return_logits=False, deformable=True):
    """A dense model by name (``centernet_dla34``, ``fairmot_dla34``, ``dla34up`` ..).

    Args:
        pretrained: ``False``, or a CenterNet / FairMOT / ucbdrive ``.pth`` checkpoint, or a
            ``.pdparams`` file converted from one. There are no published Paddle weights:
            convert the PyTorch release with ``paddle-dla convert``.
        heads: ``{name: channels}`` (CenterNet / FairMOT); default the file's, else the
            model's own (COCO: hm 80 / wh 2 / reg 2; FairMOT: hm 1 / wh 4 / id 128 / reg 2).
        head_conv: the heads' hidden width (default the file's, else 256).
        num_classes: DLA-Up classes (default the file's, else 19).
        return_logits: DLA-Up also returns the stride-2 logits.
        deformable: DCNv2 in the necks (CenterNet / FairMOT; the released weights need it).
    """
    config = get_dense_config(name)
    state, source = _checkpoint_state(config, pretrained)
    if state is not None:
        found = _described_by(state, config)
        family = family_of(found['heads']) if found.get('heads') else config.name
        if family != config.name:
            raise StateDictMismatch(context=f'{printable(source)} is a {family} checkpoint '
                                            f'(heads {", ".join(found["heads"])}), not '
                                            f'{config.name}: load it with create_model('
                                            f'{family!r})')
        heads = found.get('heads', heads) if heads is None else heads
        head_conv = found.get('head_conv', head_conv) if head_conv is None else head_conv
        num_classes = found.get('num_classes') if num_classes is None else num_classes
    if config.is_centernet:
        if num_classes is not None or return_logits:
            raise TypeError(f'{config.name} takes heads=, not num_classes= or return_logits=')
        model = CenterNetDLA(config, heads=heads, head_conv=head_conv, deformable=deformable)
    else:
        if heads is not None or head_conv is not None or not deformable:
            raise TypeError(f'{config.name} takes num_classes=, not heads=, head_conv= or '
                            f'deformable=')
        model = DLAUpSegmentation(config, num_classes=num_classes, return_logits=return_logits)
    if state is not None:
        load_state_dict_strict(model, state, context=f'{printable(source)} does not fit '
                                                     f'{config.name}')
    return model


def _checkpoint_state(config, pretrained):
    if pretrained is False or pretrained is None:
        return None, None
    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(f'{config.name} has no published Paddle weights; pass pretrained='
                         f'the path of a {config.reference.split()[0]} checkpoint (.pth), or '
                         f'of the .pdparams paddle-dla convert writes from one')
    path = os.fspath(pretrained)
    if not os.path.exists(path) and os.sep not in path and '.' not in path:
        raise UnknownName(f'{config.name} has no published Paddle weights (no {path!r} '
                         f'weights); pass the path of a checkpoint file')
    if path.endswith('.pdparams'):
        return load_pdparams(path), path
    return convert_dense_checkpoint(path, model=config.name).state, path


def _described_by(state, config):
    """Heads and width, or class count, as the (Paddle-named) state holds them."""
    torch_named = {to_torch_key(k): v for k, v in state.items()}
    if config.is_centernet:
        heads, head_conv = heads_in(torch_named)
        return {'heads': heads, 'head_conv': head_conv} if heads else {}
    weight = state.get('fc.0.weight')
    return {'num_classes': int(weight.shape[0])} if np.ndim(weight) == 4 else {}

