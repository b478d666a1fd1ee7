"""Pretrained-weights registry: one entry per (variant, tag), the single source of truth for
where each checkpoint comes from, its file hash, how to preprocess for it, and what it
is published to score on ImageNet-1k val (50,000 images)."""
import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

from .variants import VARIANTS, get_config

OFFICIAL_SERVER = 'http://dl.yf.io/dla/models/imagenet/'
TIMM_MIRROR = 'https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/'
HF_HUB = 'https://huggingface.co/timm/{}.in1k/resolve/main/model.safetensors'

TIMM_TABLE = 'timm results table'
PADDLE_PORT_TABLE = 'Paddle port table (+tricks weights)'


@dataclass(frozen=True)
class EvalTransform:
    """The reference ImageNet protocol: PIL bilinear resize of the short side, centre crop."""

    resize: int = 256           # floor(224 / 0.875)
    crop: int = 224
    crop_pct: float = 0.875
    interpolation: str = 'bilinear'
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Source:
    """One downloadable file. ``sha256_prefix`` is the hash that its file name carries."""

    url: str
    sha256_prefix: Optional[str] = None

    @property
    def filename(self):
        return self.url.rstrip('/').rsplit('/', 1)[-1]

    @property
    def format(self):
        return 'safetensors' if self.filename.endswith('.safetensors') else 'pth'


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
    license: str = 'BSD-3-Clause'
    num_classes: int = 1000
    transform: EvalTransform = field(default_factory=EvalTransform)

    @property
    def name(self):
        return f'{self.variant}.{self.tag}'


def _pth(base, stem, sha):
    return Source(f'{base}{stem}-{sha}.pth', sha)


# name: (official sha, timm-mirror stem and sha, top1, top5, params M, GMACs)
_OFFICIAL = {
    'dla_34': ('ba72cf86', 'dla34', '2b83ff04', 74.632, 92.052, 15.8, 3.1),
    'dla_46_c': ('2bfd52c3', 'dla46_c', '9b68d685', 64.880, 86.330, 1.3, 0.5),
    'dla_46x_c': ('d761bae7', 'dla46x_c', '6bc5b5c8', 66.008, 86.946, 1.1, 0.5),
    'dla_60x_c': ('b870c45c', 'dla60x_c', 'a38e054a', 67.928, 88.426, 1.3, 0.6),
    'dla_60': ('24839fc4', 'dla60', '9e91bd4d', 77.036, 93.316, 22.0, 4.2),
    'dla_60x': ('d15cacda', 'dla60x', '6818f6bb', 78.234, 94.022, 17.4, 3.5),
    'dla_102': ('d94d9790', 'dla102', '21f57b54', 78.016, 93.952, 33.3, 7.2),
    'dla_102x': ('ad62be81', 'dla102x', '7ec0aa2a', 78.516, 94.226, 26.4, 5.9),
    'dla_102x2': ('262837b6', 'dla102x2', 'ac4239c4', 79.448, 94.654, 41.4, 9.3),
    'dla_169': ('0914e092', 'dla169', '7c767967', 78.702, 94.334, 53.5, 11.6),
    'dla_60_res2net': (None, 'res2net_dla60_4s', 'd88db7f9', 78.480, 94.204, 20.85, 4.1),
    'dla_60_res2next': (None, 'res2next_dla60_4s', 'd327927b', 78.488, 94.144, 17.03, 3.5),
}
# name: (sha, top1, top5) of the "+tricks" checkpoints on the official server.
_TRICKS = {
    'dla_34': ('24a49e58', 76.39, 93.15),
    'dla_60': ('14488826', None, None),
    'dla_102': ('27a30eac', 79.44, 94.76),
}


def _build():
    table = {}
    for name, (sha, mirror_stem, mirror_sha, top1, top5, params, gmacs) in _OFFICIAL.items():
        official = get_config(name).official_name
        is_res2net = sha is None
        sources = (() if is_res2net else (_pth(OFFICIAL_SERVER, official, sha),)) + (
            _pth(TIMM_MIRROR, mirror_stem, mirror_sha), Source(HF_HUB.format(official)))
        table[(name, 'official')] = Weights(
            name, 'official', sources, top1, top5, TIMM_TABLE, params,
            params_count_bn_stats=not is_res2net, gmacs=gmacs,
            license='unknown' if is_res2net else 'BSD-3-Clause')
    for name, (sha, top1, top5) in _TRICKS.items():
        base = table[(name, 'official')]
        table[(name, 'tricks')] = Weights(
            name, 'tricks', (_pth(OFFICIAL_SERVER, get_config(name).official_name + '+tricks',
                                  sha),),
            top1, top5, PADDLE_PORT_TABLE if top1 is not None else None, base.params_m,
            base.params_count_bn_stats, base.gmacs)
    return table


WEIGHTS = _build()
DEFAULT_TAG = 'official'
assert {v for v, _ in WEIGHTS} == set(VARIANTS)


OVERRIDE_ENV = 'PADDLE_DLA_WEIGHTS_OVERRIDE'


def _source_overrides():
    """``{'dla_34.official': [Source, ...]}`` from the JSON file named by
    ``$PADDLE_DLA_WEIGHTS_OVERRIDE``: for mirrors that re-save files, and for tests.

    Only the sources (URL and the hash each must match) can be replaced; every
    check still applies to them.
    """
    path = os.environ.get(OVERRIDE_ENV)
    if not path:
        return {}
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        return {name: tuple(Source(s['url'], s.get('sha256_prefix')) for s in entry['sources'])
                for name, entry in data.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'{OVERRIDE_ENV}={path} is not a readable weights override file '
                         f'({exc}); expected {{"dla_34.official": {{"sources": [{{"url": ..., '
                         f'"sha256_prefix": ...}}]}}}}') from exc


def get_weights(variant, tag=None):
    """The registry entry for ``variant`` and ``tag`` (default: ``official``)."""
    name = get_config(variant).name
    tag = tag or DEFAULT_TAG
    if (name, tag) not in WEIGHTS:
        tags = sorted(t for v, t in WEIGHTS if v == name)
        raise ValueError(f'no {tag!r} weights for {name}; available tags: {", ".join(tags)}')
    entry = WEIGHTS[(name, tag)]
    sources = _source_overrides().get(entry.name)
    return dataclasses.replace(entry, sources=sources) if sources else entry


def list_weights(variant=None):
    """All registry entries, or those of one variant."""
    name = get_config(variant).name if variant else None
    return [get_weights(v, t) for (v, t) in WEIGHTS if name in (None, v)]
