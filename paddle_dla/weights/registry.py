"""Pretrained-weights registry: one entry per (variant, tag), the single source of truth for
where each checkpoint comes from, its file hash, how to preprocess for it, and what it
is published to score on ImageNet-1k val (50,000 images)."""
import dataclasses
import json
import os
import urllib.parse
from dataclasses import dataclass
from typing import Optional, Tuple

from ..core.digests import Expected, at_least, strength_rank, strongest
from ..core.errors import UnknownName
from ..models.imagenet import NUM_CLASSES
from ..models.preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from ..models.preprocessing import Preprocessing
from ..models.variants import CLASSIFIER, FIRST_CONV, VARIANTS, get_config

OFFICIAL_SERVER = 'http://dl.yf.io/dla/models/imagenet/'
TIMM_MIRROR = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/'
HF_HUB = 'https://huggingface.co/timm/{}.in1k/resolve/main/model.safetensors'
OPENVINO_MIRROR = ('https://storage.openvinotoolkit.org/repositories/open_model_zoo/public/'
                   '2022.1/dla-34/')
# Variants whose official file a second publisher mirrors over HTTPS.
SECOND_PUBLISHER = {'dla_34': OPENVINO_MIRROR}
# Full digests known from a second publisher (the OpenVINO Open Model Zoo's model.yml), by
# file name: (SHA-384, size in bytes).
FULL_DIGESTS = {
    'dla34-ba72cf86.pth': ('38c035736538b6c67f2539bf1ca1cc1349c3691f41321bd58de9e97aa9eb83ea'
                           '6f52c4aeef7c4cd54c92b6f8c3f3e89b', 63228658),
}

TIMM_TABLE = 'timm results table'
DEFAULT_TAG = 'official'
PADDLE_PORT_TABLE = 'Paddle port table (+tricks weights)'


@dataclass(frozen=True)
class Source:
    """One downloadable file: its URL and what is known of its content (the sha256 prefix
    its file name carries, and where published, its full SHA-384 and size)."""

    url: str
    sha256_prefix: Optional[str] = None
    sha384: Optional[str] = None
    size: Optional[int] = None

    @property
    def filename(self):
        return self.url.rstrip('/').rsplit('/', 1)[-1]

    @property
    def expected(self):
        return Expected(self.sha256_prefix, self.sha384, self.size)

    @property
    def secure_transport(self):
        return urllib.parse.urlsplit(self.url).scheme == 'https'


def preference(source):
    """Sort key: HTTPS before plain HTTP, then the strongest content check first."""
    return (not source.secure_transport, strength_rank(source.expected.strength))


def cache_order(weights):
    """The entry's sources to try: those whose check clears the entry's cache bar first
    (each group in :func:`preference` order), so a weaker one is used only when every
    stronger one failed."""
    return sorted(weights.sources, key=lambda s: not weights.caches(s.expected.strength))


@dataclass(frozen=True)
class Weights:
    variant: str
    tag: str
    sources: Tuple[Source, ...]
    top1: Optional[float]           # published ImageNet-1k val accuracy, %
    top5: Optional[float]
    metrics_source: Optional[str]
    params_m: float                 # published parameter count (millions)
    params_count_bn_stats: bool     # whether params_m counts BN running statistics
    gmacs: float                    # published multiply-accumulates at 224 (billions)
    num_classes: int = NUM_CLASSES
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING
    classifier: str = CLASSIFIER    # module names that loading adapts (as timm's configs)
    first_conv: str = FIRST_CONV
    # The strongest check any source of this entry has ever been known by. A file becomes
    # this entry's cached weights only through a match at that strength, however it came
    # (download, local file, converter): an entry whose official file has a known SHA-384
    # is never filled by a file that only matches a 32-bit name prefix.
    cache_bar: Optional[str] = None

    def __post_init__(self):
        if self.cache_bar is None:
            object.__setattr__(self, 'cache_bar',
                               strongest(s.expected.strength for s in self.sources))

    @property
    def name(self):
        return f'{self.variant}.{self.tag}'

    def caches(self, strength):
        """Whether a file matched at ``strength`` may become this entry's cached weights."""
        return self.cache_bar is not None and at_least(strength, self.cache_bar)


def _pth(base, stem, sha):
    filename = f'{stem}-{sha}.pth'
    sha384, size = FULL_DIGESTS.get(filename, (None, None))
    return Source(base + filename, sha, sha384, size)


# name: (official sha, timm-mirror sha, top1, top5, params M, GMACs); the Res2Net variants
# have no official file.
_OFFICIAL = {
    'dla_34': ('ba72cf86', '2b83ff04', 74.632, 92.052, 15.8, 3.1),
    'dla_46_c': ('2bfd52c3', '9b68d685', 64.880, 86.330, 1.3, 0.5),
    'dla_46x_c': ('d761bae7', '6bc5b5c8', 66.008, 86.946, 1.1, 0.5),
    'dla_60x_c': ('b870c45c', 'a38e054a', 67.928, 88.426, 1.3, 0.6),
    'dla_60': ('24839fc4', '9e91bd4d', 77.036, 93.316, 22.0, 4.2),
    'dla_60x': ('d15cacda', '6818f6bb', 78.234, 94.022, 17.4, 3.5),
    'dla_102': ('d94d9790', '21f57b54', 78.016, 93.952, 33.3, 7.2),
    'dla_102x': ('ad62be81', '7ec0aa2a', 78.516, 94.226, 26.4, 5.9),
    'dla_102x2': ('262837b6', 'ac4239c4', 79.448, 94.654, 41.4, 9.3),
    'dla_169': ('0914e092', '7c767967', 78.702, 94.334, 53.5, 11.6),
    'dla_60_res2net': (None, 'd88db7f9', 78.480, 94.204, 20.85, 4.1),
    'dla_60_res2next': (None, 'd327927b', 78.488, 94.144, 17.03, 3.5),
}
# The timm mirror names its files as the official release, except these.
_TIMM_STEMS = {'dla_60_res2net': 'res2net_dla60_4s', 'dla_60_res2next': 'res2next_dla60_4s'}
# name: (sha, top1, top5) of the "+tricks" checkpoints on the official server.
_TRICKS = {
    'dla_34': ('24a49e58', 76.39, 93.15),
    'dla_60': ('14488826', None, None),
    'dla_102': ('27a30eac', 79.44, 94.76),
}


def _build():
    table = {}
    for name, (sha, mirror_sha, top1, top5, params, gmacs) in _OFFICIAL.items():
        official = get_config(name).official_name
        is_res2net = sha is None
        sources = (() if is_res2net else (_pth(OFFICIAL_SERVER, official, sha),)) + (
            _pth(TIMM_MIRROR, _TIMM_STEMS.get(name, official), mirror_sha),
            Source(HF_HUB.format(official)))
        if name in SECOND_PUBLISHER:
            sources += (_pth(SECOND_PUBLISHER[name], official, sha),)
        table[(name, DEFAULT_TAG)] = Weights(
            name, DEFAULT_TAG, tuple(sorted(sources, key=preference)), top1, top5, TIMM_TABLE,
            params, params_count_bn_stats=not is_res2net, gmacs=gmacs)
    for name, (sha, top1, top5) in _TRICKS.items():
        base = table[(name, DEFAULT_TAG)]
        table[(name, 'tricks')] = Weights(
            name, 'tricks', (_pth(OFFICIAL_SERVER, get_config(name).official_name + '+tricks',
                                  sha),),
            top1, top5, PADDLE_PORT_TABLE if top1 is not None else None, base.params_m,
            base.params_count_bn_stats, base.gmacs)
    return table


WEIGHTS = _build()
assert {v for v, _ in WEIGHTS} == set(VARIANTS)


OVERRIDE_ENV = 'PADDLE_DLA_WEIGHTS_OVERRIDE'


_OVERRIDE_FIELDS = {'url', 'sha256_prefix', 'sha384', 'size'}
_override_cache = {}


def _source_overrides():
    """``{'dla_34.official': (Source, ...)}`` from the JSON file named by
    ``$PADDLE_DLA_WEIGHTS_OVERRIDE``: for mirrors that re-save files, and for tests.

    Only the sources (URL and what each file must match) can be replaced; every check
    still applies to them. Read once per change of the file.
    """
    path = os.environ.get(OVERRIDE_ENV)
    if not path:
        return {}
    try:
        stamp = (path, os.stat(path).st_mtime_ns)
        if stamp not in _override_cache:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
            _override_cache.clear()
            _override_cache[stamp] = {name: tuple(sorted(
                (_override_source(s) for s in entry['sources']), key=preference))
                for name, entry in data.items()}
        return _override_cache[stamp]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f'{OVERRIDE_ENV}={path} is not a readable weights override file '
                         f'({exc}); expected {{"dla_34.official": {{"sources": [{{"url": ..., '
                         f'"sha256_prefix": ..., "sha384": ..., "size": ...}}]}}}}') from None


_HEX = frozenset('0123456789abcdef')


def _override_source(entry):
    """One source of an override file, its checks held to what they claim: a name prefix
    of at least 8 hex digits (32 bits), a whole SHA-384, a size in bytes."""
    unknown = set(entry) - _OVERRIDE_FIELDS
    if unknown or not isinstance(entry.get('url'), str):
        raise ValueError(f'bad source entry {entry!r}')
    prefix, sha384, size = entry.get('sha256_prefix'), entry.get('sha384'), entry.get('size')
    if prefix is not None and not (isinstance(prefix, str) and 8 <= len(prefix) <= 64 and
                                   set(prefix.lower()) <= _HEX):
        raise ValueError(f'sha256_prefix {prefix!r} of {entry["url"]} is not 8 to 64 hex digits')
    if sha384 is not None and not (isinstance(sha384, str) and len(sha384) == 96 and
                                   set(sha384.lower()) <= _HEX):
        raise ValueError(f'sha384 of {entry["url"]} is not 96 hex digits')
    if size is not None and not (type(size) is int and size > 0):
        raise ValueError(f'size {size!r} of {entry["url"]} is not a positive whole number')
    return Source(entry['url'], prefix, sha384, size)


def get_weights(variant, tag=None):
    """The registry entry for ``variant`` and ``tag`` (default: ``official``)."""
    name = get_config(variant).name
    tag = tag or DEFAULT_TAG
    if (name, tag) not in WEIGHTS:
        tags = sorted(t for v, t in WEIGHTS if v == name)
        raise UnknownName(f'no {tag!r} weights for {name}; available tags: {", ".join(tags)}')
    entry = WEIGHTS[(name, tag)]
    sources = _source_overrides().get(entry.name)
    if not sources:
        return entry
    # An override may add checks, never lower the bar the built-in sources set.
    bar = strongest([entry.cache_bar, *(s.expected.strength for s in sources)])
    return dataclasses.replace(entry, sources=sources, cache_bar=bar)


def list_weights(variant=None):
    """All registry entries, or those of one variant."""
    name = get_config(variant).name if variant else None
    return [get_weights(v, t) for (v, t) in WEIGHTS if name in (None, v)]
