"""File digests, and what a match proves.

A published DLA file name carries the first 8 hex digits of its sha256 (32 bits): enough to
catch a corrupt or truncated download, not an attacker, who can find another file with the
same prefix in minutes. Where a publisher gives a full digest (SHA-384 and size), a file is
checked against that instead, which no one can forge.
"""
import hashlib
from dataclasses import dataclass
from typing import Optional

from .errors import PaddleDLAError

CHUNK = 1 << 20
# No DLA checkpoint comes near this, training state included: the most a file or a download
# may hold before it is refused (a server, or a file, may not exhaust disk or memory).
MAX_CHECKPOINT_BYTES = 2 << 30
FULL, PREFIX = 'SHA-384', 'sha256 prefix'
# Checks from strongest to weakest; None is no check at all.
STRENGTHS = (FULL, PREFIX, None)


def strength_rank(strength):
    """0 for the strongest check, larger for weaker ones (None, no check, is weakest)."""
    return STRENGTHS.index(strength)


def strongest(strengths):
    """The strongest of some checks (None when there are none, or none is a check)."""
    return min(strengths, key=strength_rank, default=None)


def at_least(strength, bar):
    """Whether a match of ``strength`` clears ``bar``; no check (None) never does."""
    return strength is not None and strength_rank(strength) <= strength_rank(bar)


class DigestMismatch(PaddleDLAError, ValueError):
    """A file's content is not the one expected."""


@dataclass(frozen=True)
class Found:
    sha256: str
    sha384: str
    size: int


class Hasher:
    """Every digest of a stream at once, so a download is read a single time."""

    def __init__(self):
        self._sha256, self._sha384, self.size = hashlib.sha256(), hashlib.sha384(), 0

    def update(self, block):
        self._sha256.update(block)
        self._sha384.update(block)
        self.size += len(block)

    def found(self):
        return Found(self._sha256.hexdigest(), self._sha384.hexdigest(), self.size)


def file_digests(path):
    hasher = Hasher()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK), b''):
            hasher.update(block)
    return hasher.found()


@dataclass(frozen=True)
class Expected:
    """What is known of a file's content: a 32-bit name hash, and maybe its full digest."""

    sha256_prefix: Optional[str] = None
    sha384: Optional[str] = None
    size: Optional[int] = None

    @property
    def strength(self):
        """``'SHA-384'`` (cryptographic), ``'sha256 prefix'`` (a typo check) or None."""
        return FULL if self.sha384 else PREFIX if self.sha256_prefix else None

    def describe(self):
        return {FULL: 'full SHA-384 and size', PREFIX: '32-bit sha256 name prefix only',
                None: 'no published hash'}[self.strength]

    def size_ok(self, size):
        return self.size is None or size == self.size

    def matches(self, found):
        """Whether ``found`` is this content, at the strongest check known."""
        if not self.size_ok(found.size):
            return False
        if self.sha384:
            return found.sha384 == self.sha384.lower()
        if self.sha256_prefix:
            return found.sha256.startswith(self.sha256_prefix.lower())
        return False

    def check(self, found, label):
        """Raise :class:`DigestMismatch` unless ``found`` matches; no hash known passes."""
        if not self.size_ok(found.size):
            raise DigestMismatch(f'{label}: size mismatch: expected {self.size:,} bytes, got '
                                 f'{found.size:,} (corrupt or altered file)')
        if self.sha384 and found.sha384 != self.sha384.lower():
            raise DigestMismatch(f'{label}: SHA-384 mismatch: expected {self.sha384[:16]}..., '
                                 f'got {found.sha384[:16]}... (corrupt or altered file)')
        if self.sha256_prefix and not found.sha256.startswith(self.sha256_prefix.lower()):
            raise DigestMismatch(f'{label}: sha256 mismatch: expected {self.sha256_prefix}..., '
                                 f'got {found.sha256[:len(self.sha256_prefix)]}... (corrupt or '
                                 f'altered file)')
