"""``pretrained=True``: find converted weights in the cache, or download, verify, convert and
cache them. One process per machine downloads (a file lock); the others wait and reuse."""
import os
import urllib.parse

from filelock import FileLock

from .cache import cached_weights_path, weights_home
from .checkpoint import load_pdparams, save_pdparams
from .download import DownloadError, download
from .weights import get_weights


class PretrainedUnavailable(RuntimeError):
    """No source of a registry entry could be fetched and converted."""


def mirror_url(url):
    """``PADDLE_DLA_MIRROR`` replaces scheme and host of every source, keeping its path."""
    mirror = os.environ.get('PADDLE_DLA_MIRROR')
    if not mirror:
        return url
    return mirror.rstrip('/') + urllib.parse.urlsplit(url).path


def _fetch_and_convert(weights, source, target, keep_download):
    """Download one source, convert it strictly, write ``target``. Raises with a short reason."""
    from .convert.pipeline import convert_checkpoint

    raw = os.path.join(weights_home(), 'downloads', source.filename if source.sha256_prefix
                       else f'{weights.variant}-{weights.tag}-{source.filename}')
    try:
        download(mirror_url(source.url), raw, source.sha256_prefix)
        try:
            conversion = convert_checkpoint(raw, model=weights.variant, check_hash=False)
        except Exception as exc:  # noqa: BLE001 - reported as this source's failure
            raise DownloadError(f'downloaded but not convertible: {" ".join(str(exc).split())}')
        save_pdparams(conversion.state, target)
        return conversion.state
    finally:
        if not keep_download and os.path.exists(raw):
            os.remove(raw)


def manual_instructions(weights):
    source = weights.sources[0]
    return (f'To proceed by hand: fetch {source.url} (or any of the sources above) on a machine '
            f'with internet access, then run: python convert/torch2paddle.py --src '
            f'{source.filename} --model {weights.variant} --dst '
            f'{cached_weights_path(weights.variant, weights.tag)}')


def _lock_path(target):
    locks = os.path.join(weights_home(), '.locks')
    os.makedirs(locks, exist_ok=True)
    return os.path.join(locks, os.path.basename(target) + '.lock')


def cache_report():
    """``(entry, path, sha256 or None)`` for every registry entry, present or missing."""
    from .convert.identify import sha256_of
    from .weights import list_weights

    rows = []
    for weights in list_weights():
        path = cached_weights_path(weights.variant, weights.tag)
        rows.append((weights, path, sha256_of(path) if os.path.isfile(path) else None))
    return rows


def load_pretrained_state(variant, tag=None, keep_download=False):
    """The converted state dict of a registry entry, from the cache or fetched into it."""
    weights = get_weights(variant, tag)
    target = cached_weights_path(weights.variant, weights.tag)
    if os.path.isfile(target):
        return load_pdparams(target)
    with FileLock(_lock_path(target)):
        if os.path.isfile(target):  # another process finished it while we waited
            return load_pdparams(target)
        failures = []
        for source in weights.sources:
            try:
                return _fetch_and_convert(weights, source, target, keep_download)
            except DownloadError as exc:
                failures.append(f'{mirror_url(source.url)}: {exc}')
    tried = '\n'.join(f'  - {f}' for f in failures)
    raise PretrainedUnavailable(
        f'could not get pretrained weights {weights.variant} (tag {weights.tag!r}); '
        f'sources tried:\n{tried}\n{manual_instructions(weights)}')
