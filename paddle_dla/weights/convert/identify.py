"""Recognise the published checkpoint files of the weights registry, and check file hashes.

File names of published checkpoints carry the first hex digits of their sha256
(``dla34-ba72cf86.pth``); a file whose content does not match its name is corrupt. A name
prefix is 32 bits, a typo check: where the registry knows a file's full SHA-384, a file
counts as that published file only when the full digest matches.
"""
import os
import re

from ...core.digests import FULL, DigestMismatch, file_digests, strength_rank
from ...core.errors import printable
from ..registry import list_weights

_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.(?:pth|pt|bin|safetensors)$')


class HashMismatch(DigestMismatch):
    """A file's content does not match the hash its name carries."""


def sha256_of(path):
    return file_digests(path).sha256


def name_hash(path):
    """The hash prefix in a file name such as ``dla34-ba72cf86.pth``, or None."""
    match = _HASH_IN_NAME.search(os.path.basename(path))
    return match.group(1) if match else None


def _published_sources():
    """Every source with a check, the registry's own and those ``$PADDLE_DLA_WEIGHTS_OVERRIDE``
    names (a mirror's files are recognised too; the bar for the cache stays the registry's)."""
    for weights in list_weights():
        for source in weights.sources:
            if source.expected.strength:
                yield weights, source


def check_name_hash(path, found):
    """Refuse a file whose content contradicts its name: the sha256 prefix the name carries,
    and the full digest of the published file of that name where the registry knows it."""
    name = os.path.basename(path)
    prefix = name_hash(path)
    if prefix and not found.sha256.startswith(prefix):
        raise HashMismatch(
            f'sha256 mismatch: {printable(name)} names hash {prefix} but its content '
            f'hashes to {found.sha256[:len(prefix)]}; the file is corrupt or incomplete, download '
            f'it again (or pass --no-hash-check if you renamed it yourself)')
    for _, source in _published_sources():
        if source.filename == name and source.expected.strength == FULL and \
                not source.expected.matches(found):
            raise HashMismatch(
                f'{printable(name)} has the name of a published checkpoint whose full SHA-384 '
                f'is known, but its content differs (its sha256 prefix matching the name proves '
                f'nothing); it is not the published file: download it again, or pass '
                f'--no-hash-check to convert it as an unpublished checkpoint')


def identify(path, found):
    """``(Weights entry, Source, how)`` of the published file this is, or None.

    ``how`` is the strength of the match: ``'SHA-384'`` when the full digest matches,
    ``'sha256 prefix'`` when the registry knows only the 32-bit prefix and it matches, and
    ``'name'`` when only the file name does (possible only with the name-hash check off).
    Where several sources match, the strongest match wins.
    """
    matches, by_name = [], None
    for weights, source in _published_sources():
        if source.expected.matches(found):
            matches.append((weights, source, source.expected.strength))
        elif by_name is None and source.filename == os.path.basename(path):
            by_name = (weights, source, 'name')
    if matches:
        return min(matches, key=lambda match: strength_rank(match[2]))
    return by_name
