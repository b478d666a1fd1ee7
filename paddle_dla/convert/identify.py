"""Recognise the published checkpoint files of the weights registry, and check file hashes.

File names of published checkpoints carry the first hex digits of their sha256
(``dla34-ba72cf86.pth``); a file whose content does not match its name is corrupt.
"""
import hashlib
import os
import re

from ..weights import WEIGHTS

_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.(?:pth|pt|bin|safetensors)$')


class HashMismatch(ValueError):
    """A file's content does not match the hash its name carries."""


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def name_hash(path):
    """The hash prefix in a file name such as ``dla34-ba72cf86.pth``, or None."""
    match = _HASH_IN_NAME.search(os.path.basename(path))
    return match.group(1) if match else None


def check_name_hash(path, sha256):
    prefix = name_hash(path)
    if prefix and not sha256.startswith(prefix):
        raise HashMismatch(
            f'sha256 mismatch: {os.path.basename(path)} names hash {prefix} but its content '
            f'hashes to {sha256[:len(prefix)]}; the file is corrupt or incomplete, download it '
            f'again (or pass --no-hash-check if you renamed it yourself)')


def identify(path, sha256):
    """``(Weights entry, Source, how)`` of the published file this is, or None.

    ``how`` is ``'sha256'`` when the content hash matches a published file, and
    ``'name'`` when only the file name does (possible only with the name-hash
    check turned off, since a published name carries its hash).
    """
    by_name = None
    for weights in WEIGHTS.values():
        for source in weights.sources:
            if source.sha256_prefix and sha256.startswith(source.sha256_prefix):
                return weights, source, 'sha256'
            if by_name is None and source.sha256_prefix and \
                    source.filename == os.path.basename(path):
                by_name = (weights, source, 'name')
    return by_name
