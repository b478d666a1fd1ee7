"""Streaming downloads that always end: a timeout per read, an overall deadline per file
(a server dripping one byte a second is cut off), a size cap, bounded retries, digests
computed on the fly and checked before the file appears under its name (atomic rename).
Redirects are followed by hand, and never from HTTPS down to plain HTTP; the standard proxy
variables are honoured."""
import http.client
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request

from .atomic import atomic_output
from .digests import DigestMismatch, Expected, Hasher
from .errors import PaddleDLAError, one_line

DEFAULT_TIMEOUT_S = 20.0
DEFAULT_DEADLINE_S = 1800.0
ATTEMPTS = 3
CHUNK = 1 << 20
MAX_REDIRECTS = 5
MAX_UNKNOWN_SIZE = 2 << 30   # no DLA checkpoint is near this; a server may not fill the disk


class DownloadError(PaddleDLAError):
    """A source could not be fetched; ``str()`` says why in a few words."""

    def __init__(self, message, transient=False):
        super().__init__(message)
        self.transient = transient


def _env_seconds(name, default):
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        raise DownloadError(f'{name} must be a number of seconds') from None
    if value <= 0:
        raise DownloadError(f'{name} must be positive')
    return value


def timeout_s():
    """Seconds for the connection and for each read; ``$PADDLE_DLA_TIMEOUT`` overrides."""
    return _env_seconds('PADDLE_DLA_TIMEOUT', DEFAULT_TIMEOUT_S)


def deadline_s():
    """Seconds one file may take in all, retries included; ``$PADDLE_DLA_DEADLINE`` overrides."""
    return _env_seconds('PADDLE_DLA_DEADLINE', DEFAULT_DEADLINE_S)


class _Watchdog:
    """Shuts the current connection's socket down when the deadline passes, which wakes a
    read blocked on a server that sends nothing more."""

    def __init__(self, deadline):
        self.deadline, self.expired, self._conn = deadline, False, None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, conn):
        self._conn = conn
        if self.expired:
            self._fire()

    def _fire(self):
        self.expired = True
        sock = getattr(self._conn, 'sock', None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def left(self):
        return self.deadline - time.monotonic()

    def cancel(self):
        self._timer.cancel()


def _connection(parts, timeout):
    """``(connection, request target)`` for a URL, through the proxy that the standard
    ``https_proxy`` / ``http_proxy`` / ``no_proxy`` variables name, if any."""
    target = (parts.path or '/') + (f'?{parts.query}' if parts.query else '')
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        via = urllib.parse.urlsplit(proxy if '://' in proxy else f'http://{proxy}')
        if parts.scheme == 'http':  # a plain HTTP proxy takes the absolute URL
            return (http.client.HTTPConnection(via.hostname, via.port, timeout=timeout),
                    urllib.parse.urlunsplit(parts))
        conn = http.client.HTTPSConnection(via.hostname, via.port, timeout=timeout,
                                           context=ssl.create_default_context())
        conn.set_tunnel(parts.hostname, parts.port)  # TLS end to end through CONNECT
        return conn, target
    if parts.scheme == 'https':
        return (http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                            context=ssl.create_default_context()), target)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), target


def _connect(url, watchdog):
    """``(connection, response)`` for a 200 answer to ``url``, following redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise DownloadError(f'unsupported URL {url!r}')
        conn, path = _connection(parts, max(0.1, min(timeout_s(), watchdog.left())))
        watchdog.watch(conn)
        conn.request('GET', path, headers={'User-Agent': 'paddle_dla'})
        watchdog.watch(conn)
        response = conn.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader('Location')
            conn.close()
            if not location:
                raise DownloadError(f'HTTP {response.status} without a Location')
            target = urllib.parse.urljoin(url, location)
            if parts.scheme == 'https' and urllib.parse.urlsplit(target).scheme != 'https':
                raise DownloadError(f'refused a redirect from HTTPS to {target}')
            url = target
            continue
        if response.status != 200:
            conn.close()
            raise DownloadError(f'HTTP {response.status} {response.reason}',
                                transient=response.status >= 500 or response.status == 429)
        return conn, response
    raise DownloadError(f'more than {MAX_REDIRECTS} redirects')


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


def _fetch_once(url, tmp_path, label, expected, watchdog):
    """Stream ``url`` into ``tmp_path``; returns its :class:`~paddle_dla.digests.Found`."""
    conn, response = _connect(url, watchdog)
    try:
        announced = response.getheader('Content-Length')
        total = int(announced) if announced and announced.isdigit() else None
        if total is not None and not expected.size_ok(total):
            raise DownloadError(f'size mismatch: the server announces {total:,} bytes, the '
                                f'published file has {expected.size:,}')
        limit = expected.size or MAX_UNKNOWN_SIZE  # never what the server says of itself
        if total is not None and total > limit:
            raise DownloadError(f'the server announces {total:,} bytes, more than the '
                                f'{limit:,} bytes a checkpoint may have')
        hasher, progress = Hasher(), _Progress(total or expected.size, label)
        with open(tmp_path, 'wb') as out:
            try:
                while True:
                    block = response.read1(CHUNK)
                    if watchdog.expired:
                        break
                    if not block:
                        break
                    hasher.update(block)
                    if hasher.size > limit:
                        raise DownloadError(f'the server sent more than the {limit:,} bytes '
                                            f'expected')
                    out.write(block)
                    progress.update(len(block))
            finally:
                progress.close()
        if watchdog.expired:
            raise DownloadError(f'not finished within the {deadline_s():g} s deadline '
                                f'($PADDLE_DLA_DEADLINE)')
        if total is not None and hasher.size != total:
            raise DownloadError(f'connection dropped after {hasher.size:,} of {total:,} bytes',
                                transient=True)
        return hasher.found()
    finally:
        conn.close()


def _why(exc, watchdog):
    if watchdog.expired:
        return f'not finished within the {deadline_s():g} s deadline ($PADDLE_DLA_DEADLINE)'
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f'timed out after {timeout_s():g} s'
    if isinstance(exc, ConnectionRefusedError):
        return 'connection refused'
    if isinstance(exc, socket.gaierror):
        return f'host not found ({exc.strerror})'
    if isinstance(exc, ssl.SSLError):
        return f'TLS failure ({exc.reason or exc})'
    if isinstance(exc, http.client.IncompleteRead):
        return f'connection dropped after {len(exc.partial):,} bytes'
    return one_line(exc)


def _transient(exc):
    if isinstance(exc, DownloadError):
        return exc.transient
    if isinstance(exc, ssl.SSLError):
        return False
    return isinstance(exc, (socket.timeout, TimeoutError, ConnectionError,
                            http.client.IncompleteRead, http.client.RemoteDisconnected))


def download(url, dst, expected=Expected(), attempts=ATTEMPTS):
    """Fetch ``url`` to ``dst`` atomically, checking ``expected``; returns the digests found.
    Nothing is left behind on failure, and the whole fetch ends within the deadline."""
    label = os.path.basename(dst)
    watchdog = _Watchdog(time.monotonic() + deadline_s())
    try:
        for attempt in range(1, attempts + 1):
            try:
                with atomic_output(dst, suffix='.part') as tmp:
                    found = _fetch_once(url, tmp, label, expected, watchdog)
                    try:
                        expected.check(found, 'downloaded file')
                    except DigestMismatch as exc:
                        raise DownloadError(str(exc).replace('downloaded file: ', '')) from None
                return found
            except Exception as exc:  # noqa: BLE001 - classified below
                if watchdog.expired or attempt == attempts or not _transient(exc):
                    if isinstance(exc, DownloadError) and not watchdog.expired:
                        raise
                    raise DownloadError(_why(exc, watchdog)) from exc
                time.sleep(min(0.5 * attempt, max(0.0, watchdog.left())))
    finally:
        watchdog.cancel()
    raise AssertionError('unreachable')


def remove_stale_parts(folder, label):
    """Delete ``.part`` files a killed download of ``label`` left in ``folder``; call it
    only while holding the lock that serialises downloads of ``label``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    stale = [n for n in names if n.startswith(f'.{label}.') and n.endswith('.part')]
    for name in stale:
        try:
            os.remove(os.path.join(folder, name))
        except OSError:
            pass
    return stale
