"""Recognise the DLA variant of a state dict from its key names and shapes."""
from ...models.variants import VARIANTS, state_num_classes
from .layouts import drop_dead_keys
from .mapping import expected_torch_shapes


def _mismatches(state, variant):
    """How many keys of ``state`` (torch naming) fail to fit ``variant``; 0 is a fit."""
    state, _ = drop_dead_keys(state, variant)
    expected = expected_torch_shapes(variant, state_num_classes(state))
    wrong = sum(1 for k, s in expected.items() if k not in state or tuple(state[k].shape) != s)
    return wrong + sum(1 for k in state if k not in expected)


def detect_variants(state):
    """``(fitting variants, closest variant or None)`` for a torch-named state dict.

    ``num_batches_tracked`` entries must be removed first.
    """
    scores = {name: _mismatches(state, name) for name in VARIANTS}
    fits = [name for name, wrong in scores.items() if wrong == 0]
    closest = min(scores, key=scores.get)
    share_ok = scores[closest] < 0.5 * max(1, len(state))
    return fits, (closest if share_ok else None)
