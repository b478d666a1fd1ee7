"""The model registry: every name ``create_model`` builds, classifier or dense, with its
task, its family and its config row, in one table derived from ``variants`` and
``dense_variants``.

The family says which builder and which checkpoint rules apply (``zoo`` holds one pair per
family): ``classifier`` (fits weights to other classes or input channels) and ``dense``
(heads or classes taken from the file). Code that needs to tell models apart asks an
entry, never whether a name is in one table or another.
"""
import difflib
from dataclasses import dataclass
from typing import Union

from ..core.errors import UnknownName
from .dense_variants import DENSE_TASKS, DENSE_VARIANTS, INPUT_MULTIPLE, DenseConfig
from .variants import VARIANTS, DLAConfig, canonical_spelling

CLASSIFICATION = 'classification'
TASKS = (CLASSIFICATION,) + DENSE_TASKS
CLASSIFIER_FAMILY, DENSE_FAMILY = 'classifier', 'dense'


@dataclass(frozen=True)
class ModelEntry:
    """One buildable model: its name, task, family and architecture row."""

    name: str
    task: str
    family: str
    config: Union[DLAConfig, DenseConfig]

    @property
    def backbone(self):
        """The DLA variant underneath (the model itself for a classifier)."""
        return self.config.name if self.family == CLASSIFIER_FAMILY else self.config.backbone

    @property
    def input_multiple(self):
        """What an input's height and width must divide by: a classifier pools whatever
        reaches it; a dense network adds up-sampled levels, which must meet exactly."""
        return 1 if self.family == CLASSIFIER_FAMILY else INPUT_MULTIPLE

    @property
    def summary(self):
        """One line for factory docstrings and listings."""
        cfg = self.config
        if self.family == CLASSIFIER_FAMILY:
            return (f'{cfg.name} (official name {cfg.official_name}): levels {cfg.levels}, '
                    f'channels {cfg.channels}, {cfg.block} blocks')
        return f'{cfg.name}: {cfg.task} over {cfg.backbone} ({cfg.reference})'


MODELS = {
    **{c.name: ModelEntry(c.name, CLASSIFICATION, CLASSIFIER_FAMILY, c)
       for c in VARIANTS.values()},
    **{c.name: ModelEntry(c.name, c.task, DENSE_FAMILY, c) for c in DENSE_VARIANTS.values()},
}

# Names accepted on input: ours and the official/timm ones, in any case, '-' for '_'.
_ALIASES = {**{name: name for name in MODELS},
            **{c.official_name: c.name for c in VARIANTS.values()}}


def get_model(name):
    """The registry entry of any accepted spelling (``dla_60``, ``dla60``, ``DLA-60``,
    ``centernet_dla34``); an unknown name raises ``ValueError`` with the closest ones."""
    key = canonical_spelling(name)
    if key in _ALIASES:
        return MODELS[_ALIASES[key]]
    close = difflib.get_close_matches(key, list(_ALIASES), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ''
    raise UnknownName(f'unknown model {name!r}.{hint} Known models: {", ".join(MODELS)}.')


def list_models(task=CLASSIFICATION):
    """Our model names in table order: the classifiers by default; ``task='segmentation'``,
    ``'detection'`` or ``'tracking'`` for those dense models; ``task=None`` for all."""
    if task not in (None,) + TASKS:
        raise ValueError(f'task must be one of {", ".join(TASKS)} or None, got {task!r}')
    return [e.name for e in MODELS.values() if task in (None, e.task)]
