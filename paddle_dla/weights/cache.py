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
def folder_lock(folder):
    """Hold the lock for writing ``folder``, kept with the cache's locks and named by the
    folder's absolute path, so that two processes writing one output folder take turns;
    where the cache cannot hold a lock file (read-only, another user's), none is taken:
    the output is the user's, the cache only coordinates."""
    import hashlib

    from filelock import FileLock

    name = hashlib.sha256(os.path.abspath(os.fspath(folder)).encode()).hexdigest()[:20]
    try:
        lock = FileLock(lock_path(f'output-{name}'))
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def compiled_home():
    """What the deployed path derives once and reuses: exports of in-memory models, their
    ONNX translations and the engine chosen per machine, model and precision."""
    return os.path.join(weights_home(), 'compiled')
