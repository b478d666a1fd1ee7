"""Atomic file output: write to a temporary file beside the target, then rename it; the
result gets the permissions the process umask gives a new file, as ``open`` would."""
import contextlib
import os
import shutil
import tempfile


def process_umask():
    """The process umask, read without changing it where Linux allows."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic read-and-restore
    os.umask(mask)
    return mask


def new_file_mode():
    return 0o666 & ~process_umask()


def same_file(a, b):
    """Whether two paths name one file (by identity: links and other spellings count)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def atomic_output(path, suffix='.tmp'):
    """Yield a temporary path to write, ``.<name>.<random><suffix>`` beside ``path``; on
    success it replaces ``path`` in one step, on failure (an exception, Ctrl-C, SIGTERM in
    our command line tools) it is removed, so readers never see a partial file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=suffix,
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_folder_output(folder):
    """Yield a temporary folder beside ``folder``; on success its files are moved into
    ``folder`` (created if needed), on failure nothing reaches ``folder``. For outputs of
    several files (an exported model): all are written before any is moved into place."""
    folder = os.path.abspath(os.fspath(folder))
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(folder) + '.', suffix='.tmp',
                           dir=parent)
    try:
        yield tmp
        os.makedirs(folder, exist_ok=True)
        mode = new_file_mode()
        for name in sorted(os.listdir(tmp)):
            os.chmod(os.path.join(tmp, name), mode)
            os.replace(os.path.join(tmp, name), os.path.join(folder, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
