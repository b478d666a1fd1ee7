"""Checkpoint layouts: wrappers, DataParallel prefixes, and the official files' dead keys."""
from ...core.errors import PaddleDLAError, printable
from ...models.variants import get_config

WRAPPER_KEYS = ('state_dict', 'model', 'model_state', 'model_state_dict', 'params')
DATA_PARALLEL_PREFIX = 'module.'
PROJECT_LEAVES = ('0.weight', '1.weight', '1.bias', '1.running_mean', '1.running_var',
                  '1.num_batches_tracked')


class UnsupportedLayout(PaddleDLAError, ValueError):
    """The file holds something other than a (wrapped) DLA state dict."""


def _is_tensor_like(value):
    return hasattr(value, 'shape') and hasattr(value, 'dtype')


def unwrap_state_dict(obj, name='checkpoint'):
    """The flat ``{key: tensor}`` inside ``obj``: unwraps ``{'state_dict': ...}`` /
    ``{'model': ...}`` training checkpoints and strips a DataParallel ``module.`` prefix.
    Keys must be strings; a wrapper that contains itself is refused."""
    name = printable(name)
    seen = set()
    while isinstance(obj, dict) and not (obj and all(_is_tensor_like(v) for v in obj.values())):
        if id(obj) in seen:
            raise UnsupportedLayout(f'{name} is refused: its wrapper dicts contain themselves')
        seen.add(id(obj))
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            keys = ', '.join(sorted(printable(k) for k in obj)[:8]) or 'nothing'
            raise UnsupportedLayout(
                f'{name} holds no DLA state dict (top-level keys: {keys}); expected tensors, or '
                f'a dict wrapping them under one of: {", ".join(WRAPPER_KEYS)}')
        obj = obj[inner]
    if not isinstance(obj, dict):
        raise UnsupportedLayout(f'{name} holds a {type(obj).__name__}, not a state dict; '
                                f'save model.state_dict() instead')
    odd = next((k for k in obj if not isinstance(k, str)), None)
    if odd is not None:
        raise UnsupportedLayout(f'{name} is not a state dict: it has a key of type '
                                f'{type(odd).__name__} ({printable(repr(odd))[:40]}); state dict '
                                f'keys are parameter names')
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in obj):
        obj = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in obj.items()}
    return obj


def dead_projects(variant):
    """``(prefix, in_channels, out_channels)`` of every Tree where the official code builds a
    ``project`` that forward never uses.

    The official Tree creates ``project`` whenever in != out, also when levels > 1;
    only levels == 1 uses it. Derived from the architecture table.
    """
    config = get_config(variant)
    found = []
    for i in range(2, 6):
        prefix, levels = f'level{i}', config.levels[i]
        in_ch, out_ch = config.channels[i - 1], config.channels[i]
        while levels > 1 and in_ch != out_ch:  # tree2 children have in == out
            found.append((prefix, in_ch, out_ch))
            prefix, levels = prefix + '.tree1', levels - 1
    return found


def dead_key_shapes(variant):
    """``{key: shape}`` of the dead ``project`` tensors an official file of ``variant`` holds."""
    shapes = {}
    for prefix, in_ch, out_ch in dead_projects(variant):
        for leaf in PROJECT_LEAVES:
            shape = (out_ch, in_ch, 1, 1) if leaf == '0.weight' else (
                () if leaf.endswith('num_batches_tracked') else (out_ch,))
            shapes[f'{prefix}.project.{leaf}'] = shape
    return shapes


def drop_dead_keys(state, variant):
    """Remove the official dead ``project`` entries of ``variant``: all of them or none.

    Returns ``(state, number of tensors dropped)``. A partial or mis-shaped set is
    left in place, so the strict check that follows reports it.
    """
    shapes = dead_key_shapes(variant)
    required = {k: s for k, s in shapes.items() if not k.endswith('num_batches_tracked')}
    if not required or not all(k in state and tuple(state[k].shape) == s
                               for k, s in required.items()):
        return state, 0
    kept = {k: v for k, v in state.items() if k not in shapes}
    return kept, len(state) - len(kept)
