"""``pretrained=True``: find converted weights in the cache, or download, verify, convert and
cache them. One process per machine downloads (a file lock, waited on for a bounded time);
the others wait and reuse. Only a file verified at its entry's strongest check is cached;
a source checked more weakly is tried only after every stronger one failed, and what it
gives is used once, never cached. A source with no published hash is used only on request."""
import contextlib
import os
import time
import urllib.parse
import warnings

from filelock import Timeout

from ..core.digests import file_digests
from ..core.errors import PaddleDLAError
from .cache import cache_lock, cached_weights_path, lock_path, weights_home
from .checkpoint import load_pdparams, save_pdparams
from .convert.pipeline import convert_checkpoint
from .download import DownloadError, check_settings, download, remove_stale_parts
from .registry import cache_order, get_weights, list_weights

ALLOW_UNVERIFIED_ENV = 'PADDLE_DLA_ALLOW_UNVERIFIED'
LOCK_TIMEOUT_ENV = 'PADDLE_DLA_LOCK_TIMEOUT'
DEFAULT_LOCK_TIMEOUT_S = 3600.0


class PretrainedUnavailable(PaddleDLAError, RuntimeError):
    """No source of a registry entry could be fetched and converted."""


class CacheBusy(PaddleDLAError, RuntimeError):
    """Another process held the download lock for longer than we may wait."""


def mirror_url(url):
    """``PADDLE_DLA_MIRROR`` replaces scheme and host of every source, keeping its path."""
    mirror = os.environ.get('PADDLE_DLA_MIRROR')
    if not mirror:
        return url
    return mirror.rstrip('/') + urllib.parse.urlsplit(url).path


def unverified_allowed():
    return os.environ.get(ALLOW_UNVERIFIED_ENV, '').strip().lower() in ('1', 'true', 'yes')


def _lock_timeout_s():
    """Seconds to wait for another process's download; always finite (a negative value
    would make the lock wait forever)."""
    try:
        value = float(os.environ.get(LOCK_TIMEOUT_ENV) or DEFAULT_LOCK_TIMEOUT_S)
    except ValueError:
        value = float('nan')
    if not 0 < value < float('inf'):
        raise PaddleDLAError(f'{LOCK_TIMEOUT_ENV} must be a positive number of seconds')
    return value


def _fetch_and_convert(weights, source, target, keep_download, failures=()):
    """Download one source and convert it strictly; write ``target`` only when the source's
    check clears the entry's cache bar. Raises with a short reason."""
    downloads = os.path.join(weights_home(), 'downloads')
    name = source.filename if source.sha256_prefix else \
        f'{weights.variant}-{weights.tag}-{source.filename}'
    raw = os.path.join(downloads, name)
    remove_stale_parts(downloads, name)  # left by a killed process; we hold the lock
    try:
        download(mirror_url(source.url), raw, source.expected)
        try:
            conversion = convert_checkpoint(raw, model=weights.variant, check_hash=False)
        except Exception as exc:  # noqa: BLE001 - reported as this source's failure
            raise DownloadError(f'downloaded but not convertible: {" ".join(str(exc).split())}')
        if weights.caches(source.expected.strength):
            save_pdparams(conversion.state, target)
        else:
            how = ('has no published hash' if source.expected.strength is None else
                   f'is checked only by its {source.expected.describe()}')
            before = f' (the stronger sources failed: {"; ".join(failures)})' if failures else ''
            warnings.warn(f'{weights.name}: {mirror_url(source.url)} {how}, weaker than the '
                          f'{weights.cache_bar} this entry is known by: its weights are used '
                          f'now but not cached{before}. To keep them, convert the file '
                          f'yourself (paddle-dla convert --src FILE --dst mine.pdparams) and '
                          f'load it with pretrained=\'mine.pdparams\'', stacklevel=3)
        return conversion.state
    finally:
        if not keep_download and os.path.exists(raw):
            os.remove(raw)


def manual_instructions(weights):
    """Fetching by hand: a source whose check fills the cache, and the command that does."""
    source = cache_order(weights)[0]
    if not weights.caches(source.expected.strength):
        return (f'To proceed by hand: no source of {weights.name} can fill the cache (none is '
                f'checked by its {weights.cache_bar}); fetch {source.url}, convert it with '
                f'paddle-dla convert --src {source.filename} --dst mine.pdparams and load it '
                f'with pretrained=\'mine.pdparams\'')
    return (f'To proceed by hand: fetch {source.url} on a machine with internet access, then '
            f'run: paddle-dla convert --src {source.filename} (a file verified by its '
            f'{weights.cache_bar} goes into the cache, {weights_home()})')


def cache_report(entries=None):
    """``(entry, path, sha256 or None)`` for each registry entry (default: all), present or
    missing."""
    rows = []
    for weights in list_weights() if entries is None else entries:
        path = cached_weights_path(weights.variant, weights.tag)
        rows.append((weights, path, file_digests(path).sha256 if os.path.isfile(path) else None))
    return rows


@contextlib.contextmanager
def _fetching(weights, target):
    """Hold the lock of fetching ``target``: one process fetches while the others wait for
    its file, for a bounded time after which the cache is said to be busy."""
    name = os.path.basename(target)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(cache_lock(name, timeout=_lock_timeout_s()))
        except Timeout:
            raise CacheBusy(
                f'another process has been fetching {weights.name} for over '
                f'{time.monotonic() - started:.0f} s (lock {lock_path(name)}); try again '
                f'later, or delete that lock file if no other paddle_dla process is running '
                f'(${LOCK_TIMEOUT_ENV} sets how long to wait)') from None
        yield


def _remove_stale_outputs(target):
    """Temporary ``.pdparams`` files a killed conversion left beside ``target``."""
    folder, base = os.path.split(target)
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if name.startswith(f'.{base}.') and name.endswith('.tmp'):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass


def load_pretrained_state(variant, tag=None, keep_download=False):
    """The converted state dict of a registry entry, from the cache or fetched into it."""
    weights = get_weights(variant, tag)
    target = cached_weights_path(weights.variant, weights.tag)
    if os.path.isfile(target):
        return load_pdparams(target)
    check_settings()  # a mistyped setting is the user's to mend, not every source's failure
    with _fetching(weights, target):
        if os.path.isfile(target):  # another process finished it while we waited
            return load_pdparams(target)
        _remove_stale_outputs(target)
        failures = []
        for source in cache_order(weights):
            url = mirror_url(source.url)
            if source.expected.strength is None:
                if not unverified_allowed():
                    failures.append(f'{url}: skipped, no published hash to verify it against '
                                    f'(set {ALLOW_UNVERIFIED_ENV}=1 to use it unverified)')
                    continue
                warnings.warn(f'{weights.name}: using {url} UNVERIFIED: no hash of this file is '
                              f'published, so its content cannot be checked '
                              f'({ALLOW_UNVERIFIED_ENV} is set)', stacklevel=2)
            try:
                return _fetch_and_convert(weights, source, target, keep_download, failures)
            except DownloadError as exc:
                failures.append(f'{url}: {exc}')
    raise PretrainedUnavailable(
        f'could not get pretrained weights {weights.variant} (tag {weights.tag!r}) from any '
        f'of its {len(weights.sources)} sources',
        details=['sources tried:', *(f'  - {f}' for f in failures), manual_instructions(weights)])
