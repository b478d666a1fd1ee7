"""Atomic file output: write to a temporary file beside the target, then rename it."""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path to write; on success it replaces ``path`` in one step, on
    failure it is removed, so readers never see a partial file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
