"""Where converted weights live: ``$PADDLE_DLA_HOME`` (default ``~/.cache/paddle_dla``).

The one place that names cache files, shared by the converter and ``pretrained=True``.
"""
import contextlib
import os

from ..models.variants import get_config


def weights_home():
    return os.path.expanduser(os.environ.get('PADDLE_DLA_HOME') or '~/.cache/paddle_dla')


def cached_weights_path(variant, tag):
    """Converted ``.pdparams`` of a registry entry, e.g. ``~/.cache/paddle_dla/dla_34-official.pdparams``."""
    return os.path.join(weights_home(), f'{get_config(variant).name}-{tag}.pdparams')


def lock_path(name):
    """The file of the lock named ``name``, in the cache's ``.locks`` folder (made if
    missing), which ``paddle-dla cache clean`` empties: every process that writes into the
    cache takes its locks from here."""
    locks = os.path.join(weights_home(), '.locks')
    os.makedirs(locks, exist_ok=True)
    return os.path.join(locks, name + '.lock')


@contextlib.contextmanager
def cache_lock(name, timeout=-1, waiting=None, optional=False):
    """Hold the cache's lock ``name`` (its file from :func:`lock_path`): the operating
    system's, so it goes with a process that dies. Waits up to ``timeout`` seconds (-1: as
    long as it takes) and raises ``filelock.Timeout`` past it; ``waiting(lock_file)`` is
    called once, before waiting, when another process holds it. ``optional``: where the
    cache cannot hold a lock file (read-only, another user's), go on without one."""
    from filelock import FileLock, Timeout

    def acquire(lock, seconds):
        """Whether ``lock`` was taken (raises past ``seconds``); False when the cache
        cannot hold its file and the lock is ``optional``."""
        try:
            lock.acquire(timeout=seconds)
            return True
        except Timeout:  # an OSError too, but another process's, never the cache's
            raise
        except OSError:
            if not optional:
                raise
            return False

    try:
        lock = FileLock(lock_path(name))
    except OSError:
        if not optional:
            raise
        lock = None
    held = False
    if lock is not None:
        try:
            held = acquire(lock, 0)
        except Timeout:
            if waiting is not None:  # outside the guard: its own errors are its own
                waiting(lock.lock_file)
            held = acquire(lock, timeout)
    try:
        yield
    finally:
        if held:
            lock.release()


def folder_lock(folder):
    """The lock for writing ``folder``, named by its absolute path, so that two processes
    writing one output folder take turns; optional (:func:`cache_lock`): the output is the
    user's, the cache only coordinates."""
    import hashlib
    name = hashlib.sha256(os.path.abspath(os.fspath(folder)).encode()).hexdigest()[:20]
    return cache_lock(f'output-{name}', optional=True)


def compiled_lock_name(folder):
    """The name of the lock held while the export folder ``folder`` (under
    :func:`compiled_home`) is made or its INT8 models added: ``cache clean`` passes over a
    folder whose lock another process holds."""
    return f'compiled-{os.path.basename(folder)}'


def compiled_home():
    """What the deployed path derives once and reuses: exports of in-memory models, their
    ONNX translations and the engine chosen per machine, model and precision."""
    return os.path.join(weights_home(), 'compiled')
