"""Streaming downloads that always end: a timeout per read, an overall deadline per file
(``$PADDLE_DLA_DEADLINE``), and a speed floor: a transfer whose average rate over the last
``$PADDLE_DLA_SPEED_TIME`` seconds (default 30) stays under ``$PADDLE_DLA_SPEED_LIMIT``
bytes/s (default 1024; 0 turns the floor off) is abandoned, as curl's ``--speed-limit`` /
``--speed-time`` do, so a server dripping a byte a second, or sending nothing while the
connection stays open, costs half a minute rather than the whole deadline. Such a source is
not retried (the caller moves on to the next one), and the reason is printed on stderr in one
line. One watchdog thread enforces both deadline and floor, shutting the socket down to wake
a blocked read. Also: a size cap, bounded retries of transient failures, digests computed on
the fly and checked before the file appears under its name (atomic rename: nothing partial is
left). Redirects are followed by hand, and never from HTTPS down to plain HTTP; the standard
proxy variables are honoured."""
import collections
import http.client
import math
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request

from ..core.atomic import atomic_output
from ..core.digests import CHUNK, MAX_CHECKPOINT_BYTES, DigestMismatch, Expected, Hasher
from ..core.errors import PaddleDLAError, ProgressStream, is_disk_full, one_line

DEFAULT_TIMEOUT_S = 20.0
DEFAULT_DEADLINE_S = 1800.0
DEFAULT_SPEED_LIMIT = 1024.0  # bytes/s
DEFAULT_SPEED_TIME_S = 30.0
ATTEMPTS = 3
MAX_REDIRECTS = 5
MAX_UNKNOWN_SIZE = MAX_CHECKPOINT_BYTES  # the cap where no size is published


class DownloadError(PaddleDLAError):
    """A source could not be fetched; ``str()`` says why in a few words."""

    def __init__(self, message, transient=False):
        super().__init__(message)
        self.transient = transient


def _env_number(name, default, unit, zero_ok=False):
    """``$name`` as a finite number (positive, or also 0 when ``zero_ok``); read before any
    connection is made, so a typo is refused at once rather than mid-transfer."""
    raw = os.environ.get(name) or ''
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        kind = 'a non-negative' if zero_ok else 'a positive'
        raise DownloadError(f'${name} must be {kind} number of {unit}, not {raw!r}')
    return value


def _env_seconds(name, default):
    return _env_number(name, default, 'seconds')


def timeout_s():
    """Seconds for the connection and for each read; ``$PADDLE_DLA_TIMEOUT`` overrides."""
    return _env_seconds('PADDLE_DLA_TIMEOUT', DEFAULT_TIMEOUT_S)


def deadline_s():
    """Seconds one file may take in all, retries included; ``$PADDLE_DLA_DEADLINE`` overrides."""
    return _env_seconds('PADDLE_DLA_DEADLINE', DEFAULT_DEADLINE_S)


class SpeedFloor(collections.namedtuple('SpeedFloor', 'limit seconds')):
    """``limit`` bytes/s averaged over the last ``seconds``: a transfer slower than that is
    not worth waiting for, however regularly its bytes arrive."""

    def too_slow(self, samples):
        """Whether ``samples`` (a deque of ``(time, bytes so far)``, oldest first, the newest
        taken now) show a whole window under the limit; drops samples no longer needed."""
        now, received = samples[-1]
        while len(samples) > 1 and samples[1][0] <= now - self.seconds:
            samples.popleft()
        start, before = samples[0]
        span = now - start
        return span >= self.seconds and received - before < self.limit * span

    def __str__(self):
        return (f'too slow: under {self.limit:,g} B/s for {self.seconds:g} s '
                f'($PADDLE_DLA_SPEED_LIMIT, $PADDLE_DLA_SPEED_TIME)')


def speed_floor():
    """The :class:`SpeedFloor` of ``$PADDLE_DLA_SPEED_LIMIT`` bytes/s over
    ``$PADDLE_DLA_SPEED_TIME`` seconds, or None when the limit is 0 (no floor)."""
    limit = _env_number('PADDLE_DLA_SPEED_LIMIT', DEFAULT_SPEED_LIMIT,
                        'bytes per second (0 turns the floor off)', zero_ok=True)
    seconds = _env_seconds('PADDLE_DLA_SPEED_TIME', DEFAULT_SPEED_TIME_S)
    return SpeedFloor(limit, seconds) if limit else None


def check_settings():
    """Refuse a mistyped timeout, deadline or speed floor before anything is fetched."""
    timeout_s()
    deadline_s()
    speed_floor()


class _Watchdog:
    """A thread that ends a transfer at the overall deadline, or when ``floor`` finds it too
    slow, by shutting the current connection's socket down: that also wakes a read blocked
    on a server that sends nothing more. ``why`` then says which, in one line."""

    def __init__(self, seconds, floor):
        self.deadline, self.floor = time.monotonic() + seconds, floor
        self._late = f'not finished within the {seconds:g} s deadline ($PADDLE_DLA_DEADLINE)'
        self.why, self._conn, self._sock = None, None, None
        self._received, self._samples = 0, None
        self._lock, self._stop = threading.Lock(), threading.Event()
        threading.Thread(target=self._run, name='paddle_dla-download-watchdog',
                         daemon=True).start()

    def begin(self):
        """An attempt starts: the speed window starts afresh (waits between attempts and
        earlier attempts' bytes do not count)."""
        with self._lock:
            self._samples = collections.deque([(time.monotonic(), self._received)])

    def end(self):
        with self._lock:
            self._samples = None

    def count(self, n):
        self._received += n

    def watch(self, conn):
        """Call with each new connection, and again once it is connected: the socket is kept
        because http.client lets go of it when the server will close the connection after
        the body, and a read of that body may still need waking."""
        self._conn, self._sock = conn, getattr(conn, 'sock', None)
        if self.why:
            self._shutdown()

    def left(self):
        return self.deadline - time.monotonic()

    def cancel(self):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(self._tick()):
            why = self._verdict()
            if why:
                self.why = why
                self._shutdown()
                return

    def _tick(self):
        """Sleep until the deadline, and meanwhile a tenth of the speed window at a time
        (bounded), so the floor acts within about a tenth of a window of being crossed."""
        step = self.left()
        if self.floor is not None:
            step = min(step, max(0.02, min(1.0, self.floor.seconds / 10)))
        return max(0.0, step)

    def _verdict(self):
        now = time.monotonic()
        if now >= self.deadline:
            return self._late
        with self._lock:
            if self._samples is None or self.floor is None:
                return None
            self._samples.append((now, self._received))
            return str(self.floor) if self.floor.too_slow(self._samples) else None

    def _shutdown(self):
        sock = getattr(self._conn, 'sock', None) or self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


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
                             desc=label, file=ProgressStream(), leave=False)
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
    """Stream ``url`` into ``tmp_path``; returns its :class:`~paddle_dla.core.digests.Found`."""
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
                    if watchdog.why or not block:
                        break
                    watchdog.count(len(block))
                    hasher.update(block)
                    if hasher.size > limit:
                        raise DownloadError(f'the server sent more than the {limit:,} bytes '
                                            f'expected')
                    out.write(block)
                    progress.update(len(block))
            finally:
                progress.close()
        if watchdog.why and hasher.size != total:  # a body complete as it was cut is kept
            raise DownloadError(watchdog.why)
        if total is not None and hasher.size != total:
            raise DownloadError(f'connection dropped after {hasher.size:,} of {total:,} bytes',
                                transient=True)
        return hasher.found()
    finally:
        conn.close()


def _why(exc, watchdog):
    if watchdog.why:
        return watchdog.why
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


def _attempt(url, dst, label, expected, watchdog):
    """One try, timed by the watchdog's speed window; ``dst`` appears only when complete and
    matching ``expected`` (atomic_output removes the ``.part`` file otherwise)."""
    watchdog.begin()
    try:
        with atomic_output(dst, suffix='.part') as tmp:
            found = _fetch_once(url, tmp, label, expected, watchdog)
            try:
                expected.check(found, 'downloaded file')
            except DigestMismatch as exc:
                raise DownloadError(str(exc).replace('downloaded file: ', '')) from None
        return found
    finally:
        watchdog.end()


def download(url, dst, expected=Expected(), attempts=ATTEMPTS):
    """Fetch ``url`` to ``dst`` atomically, checking ``expected``; returns the digests found.
    Nothing is left behind on failure, and the whole fetch ends within the deadline."""
    label = os.path.basename(dst)
    watchdog = _Watchdog(deadline_s(), speed_floor())  # bad settings refused before connecting
    try:
        for attempt in range(1, attempts + 1):
            try:
                return _attempt(url, dst, label, expected, watchdog)
            except Exception as exc:  # noqa: BLE001 - classified below
                if is_disk_full(exc):  # no source can help: the caller must hear it as such
                    raise
                if watchdog.why:  # cut off: said at once, the caller may try another source
                    print(f'{url}: {watchdog.why}', file=sys.stderr, flush=True)
                    raise DownloadError(watchdog.why) from exc
                if attempt == attempts or not _transient(exc):
                    if isinstance(exc, DownloadError):
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
