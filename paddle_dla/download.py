"""Streaming downloads: timeouts, bounded retries, sha256 on the fly, atomic rename, progress."""
import hashlib
import http.client
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request

DEFAULT_TIMEOUT_S = 20.0
ATTEMPTS = 3
CHUNK = 1 << 20


class DownloadError(Exception):
    """A source could not be fetched; ``str()`` says why in a few words."""


def timeout_s():
    """Seconds for the connection and for each read; ``$PADDLE_DLA_TIMEOUT`` overrides."""
    return float(os.environ.get('PADDLE_DLA_TIMEOUT') or DEFAULT_TIMEOUT_S)


def _transient(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return isinstance(reason, (socket.timeout, TimeoutError, ConnectionResetError))
    return isinstance(exc, (socket.timeout, TimeoutError, ConnectionError,
                            http.client.IncompleteRead, http.client.RemoteDisconnected))


def _why(exc):
    if isinstance(exc, urllib.error.HTTPError):
        return f'HTTP {exc.code} {exc.reason}'
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f'timed out after {timeout_s():g} s'
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, socket.gaierror):
        return f'host not found ({exc.strerror})'
    if isinstance(exc, http.client.IncompleteRead):
        return f'connection dropped after {len(exc.partial):,} bytes'
    return ' '.join(str(exc).split()) or type(exc).__name__


class _Progress:
    """A progress bar on stderr: tqdm when installed, else a plain percentage line."""

    def __init__(self, total, label):
        self.total, self.label, self.done, self._last = total, label, 0, 0.0
        try:
            from tqdm import tqdm
            self._bar = tqdm(total=total or None, unit='B', unit_scale=True, unit_divisor=1024,
                             desc=label, file=sys.stderr, leave=False)
        except ImportError:
            self._bar = None

    def update(self, n):
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last > 0.5:
            self._last = time.monotonic()
            pct = f'{100 * self.done / self.total:5.1f}%' if self.total else f'{self.done:,} B'
            print(f'\r{self.label}: {pct}', end='', file=sys.stderr, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=sys.stderr)


def _fetch_once(url, tmp_path, label):
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={'User-Agent': 'paddle_dla'})
    with urllib.request.urlopen(request, timeout=timeout_s()) as response, \
            open(tmp_path, 'wb') as out:
        total = int(response.headers.get('Content-Length') or 0)
        progress = _Progress(total, label)
        try:
            received = 0
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                received += len(block)
                progress.update(len(block))
        finally:
            progress.close()
        if total and received != total:
            raise ConnectionResetError(f'connection dropped after {received:,} of {total:,} bytes')
    return digest.hexdigest()


def download(url, dst, sha256_prefix=None, attempts=ATTEMPTS):
    """Fetch ``url`` to ``dst`` atomically; returns the sha256. Nothing is left on failure."""
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    label = os.path.basename(dst)
    for attempt in range(1, attempts + 1):
        fd, tmp = tempfile.mkstemp(prefix=f'.{label}.', suffix='.part', dir=folder)
        os.close(fd)
        try:
            sha256 = _fetch_once(url, tmp, label)
            if sha256_prefix and not sha256.startswith(sha256_prefix):
                raise DownloadError(f'sha256 mismatch: expected {sha256_prefix}..., got '
                                    f'{sha256[:len(sha256_prefix)]}... (corrupt or altered file)')
            os.replace(tmp, dst)
            return sha256
        except DownloadError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            if attempt == attempts or not _transient(exc):
                raise DownloadError(_why(exc)) from exc
            time.sleep(0.5 * attempt)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise AssertionError('unreachable')
