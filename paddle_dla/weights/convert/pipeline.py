"""One checkpoint file in, a strict Paddle state dict out, with what was learned on the way."""
import os
from dataclasses import dataclass
from typing import Optional

from ...core.digests import at_least
from ...core.errors import PaddleDLAError, printable
from ...models.variants import get_config, state_num_classes
from ..checkpoint import to_numpy
from .detect import detect_variants
from .identify import check_name_hash, identify
from .layouts import drop_dead_keys, unwrap_state_dict
from .mapping import TORCH_ONLY_LEAVES, convert_state_dict
from .readers import read_checkpoint, source_digests


class VariantUnknown(PaddleDLAError, ValueError):
    """No variant, or more than one, fits the checkpoint."""


@dataclass
class Conversion:
    state: dict                     # Paddle keys -> float32 numpy arrays
    torch_state: dict               # the source's live tensors, torch names, as read
    variant: str
    num_classes: int
    source_path: str
    source_sha256: str
    dead_keys_dropped: int
    tag: Optional[str] = None       # registry tag when the file is a published one
    published_file: Optional[str] = None
    identified_by: Optional[str] = None  # 'SHA-384', 'sha256 prefix' or 'name'
    cache_bar: Optional[str] = None      # the check the registry entry's cache requires

    @property
    def num_params(self):
        return int(sum(v.size for k, v in self.state.items()
                       if not k.endswith(('._mean', '._variance'))))

    def describe_source(self):
        if not self.published_file:
            return 'unpublished checkpoint'
        how = {'SHA-384': ', SHA-384 verified',
               'sha256 prefix': ', matches its 32-bit name hash'}.get(
                   self.identified_by, ', identified by name only')
        return f'published {self.published_file} ({self.variant} {self.tag}{how})'

    @property
    def is_published(self):
        """Its content matches a published file by that file's own check."""
        return bool(self.tag) and self.identified_by in ('SHA-384', 'sha256 prefix')

    @property
    def cacheable(self):
        """It may become the registry entry's cached weights: matched at the strongest check
        the entry is known by, not merely at a weaker one of some source."""
        return self.is_published and at_least(self.identified_by, self.cache_bar)

    def why_not_cached(self):
        """For a published match too weak for the cache: one sentence saying why."""
        if not self.is_published or self.cacheable:
            return None
        return (f'it matches {self.published_file} ({self.variant} {self.tag}) only by its '
                f'{self.identified_by}, and the registry knows that entry by its '
                f'{self.cache_bar}: only a file verified at that strength becomes the cached '
                f'{self.variant} {self.tag} weights')


def load_torch_state(path, raw=None):
    """The flat torch-named ``{key: numpy array}`` of a checkpoint file (``raw``: its content,
    when read already), counters removed."""
    raw = unwrap_state_dict(read_checkpoint(path) if raw is None else raw,
                            os.path.basename(path))
    return {str(k): to_numpy(v) for k, v in raw.items()
            if str(k).rpartition('.')[2] not in TORCH_ONLY_LEAVES}


def choose_variant(state, model=None, known=None):
    """The variant to convert to: ``model`` if given, else the one the keys fit."""
    if model:
        return get_config(model).name
    fits, closest = detect_variants(state)
    if len(fits) == 1:
        return fits[0]
    if len(fits) > 1:
        raise VariantUnknown(f'the checkpoint fits several variants ({", ".join(fits)}); '
                             f'choose one with --model')
    if known is not None:
        return known
    hint = (f'; closest is {closest}, try --model {closest} to see the differing keys'
            if closest else '; it does not look like a DLA checkpoint')
    raise VariantUnknown(f'no DLA variant fits the checkpoint{hint}')


def convert_checkpoint(path, model=None, check_hash=True, raw=None):
    """Read (unless ``raw`` is its content), identify, recognise and strictly convert one
    checkpoint file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f'no such checkpoint: {path}')
    found = source_digests(path) if os.path.isfile(path) else None
    if check_hash and found:
        check_name_hash(path, found)
    published = identify(path, found) if found else None
    state = load_torch_state(path, raw)
    variant = choose_variant(state, model, published[0].variant if published else None)
    if model:
        fits, _ = detect_variants(state)
        if fits and variant not in fits:
            raise VariantUnknown(f'{os.path.basename(path)} is a {" or ".join(fits)} checkpoint, '
                                 f'not {variant}: pass --model {fits[0]} or leave --model out')
    state, dropped = drop_dead_keys(state, variant)
    converted = convert_state_dict(state, variant, source=printable(path))
    if published and published[0].variant != variant:
        published = None  # a published name on another variant's weights: say nothing false
    return Conversion(
        state=converted, torch_state=state, variant=variant, num_classes=state_num_classes(converted),
        source_path=path, source_sha256=found.sha256 if found else '', dead_keys_dropped=dropped,
        tag=published[0].tag if published else None,
        published_file=published[1].filename if published else None,
        identified_by=published[2] if published else None,
        cache_bar=published[0].cache_bar if published else None)
