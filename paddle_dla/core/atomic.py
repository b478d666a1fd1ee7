"""Atomic file output: write to a temporary file beside the target, then rename it; the
result gets the permissions the process umask gives a new file, as ``open`` would. A write
that fails on a full disk is reported as the OS's error naming the target (see
:func:`disk_full_error`)."""
import contextlib
import errno
import os
import shutil
import tempfile

from .errors import DISK_FULL_ERRNOS

# With less free space than this, a failed write is put down to the full disk whatever the
# writer said: torch reports "unexpected pos", paddle.jit.save truncates without an error.
NEARLY_FULL_BYTES = 1 << 20


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
    with _full_disk_named(folder, lambda exc: path):
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=suffix,
                                   dir=folder)
        os.close(fd)
    try:
        with _full_disk_named(folder, lambda exc: path):
            yield tmp
            os.chmod(tmp, new_file_mode())
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """``text`` written to ``path`` as UTF-8, whole or not at all."""
    with atomic_output(path) as tmp:
        with open(tmp, 'w', encoding='utf-8', newline='') as f:
            f.write(text)


def write_json(path, value, indent=1):
    """``value`` as JSON, whole or not at all."""
    import json
    write_text(path, json.dumps(value, indent=indent) + '\n')


@contextlib.contextmanager
def atomic_folder_output(folder, last=None, lock=None):
    """Yield a temporary folder beside ``folder``; on success its files are moved into
    ``folder`` (created if needed), on failure nothing reaches ``folder``. For outputs of
    several files (an exported model): all are written before any is moved into place, and
    the files whose names end with ``last`` (the metadata) are moved after the others, so
    that a reader who finds them finds the rest. ``lock``, a context manager, is held while
    the files move, so that two writers of one folder leave one's files, not a mix; a move
    that fails puts back what was there."""
    folder = os.path.abspath(os.fspath(folder))
    real = os.path.realpath(folder)  # a link to another file system: write beside its target
    parent = os.path.dirname(real)
    os.makedirs(parent, exist_ok=True)
    with _full_disk_named(parent, lambda exc: folder):
        tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(real) + '.', suffix='.tmp',
                               dir=parent)
    try:
        with _full_disk_named(tmp, lambda exc: _destination_of(exc, tmp, folder)):
            yield tmp
            os.makedirs(real, exist_ok=True)
            names = sorted(os.listdir(tmp), key=lambda n: (bool(last) and n.endswith(last), n))
            mode = new_file_mode()
            for name in names:
                os.chmod(os.path.join(tmp, name), mode)
            with lock or contextlib.nullcontext():
                _move_all(tmp, real, names)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _move_all(tmp, folder, names):
    """Move ``names`` from ``tmp`` into ``folder`` in order, all or none: a folder in the
    way is found before anything moves, and a move that fails takes back the files moved
    and restores those they replaced (kept as hard links until then)."""
    for name in names:
        target = os.path.join(folder, name)
        if os.path.isdir(target) and not os.path.islink(target):
            raise IsADirectoryError(errno.EISDIR, 'a folder is in the way', target)
    kept = os.path.join(tmp, '.replaced')
    os.mkdir(kept)
    moved, replaced = [], []
    try:
        for name in names:
            target = os.path.join(folder, name)
            if os.path.lexists(target):
                try:
                    os.link(target, os.path.join(kept, name), follow_symlinks=False)
                except OSError:  # a file system without hard links
                    shutil.copy2(target, os.path.join(kept, name), follow_symlinks=False)
                replaced.append(name)
            os.replace(os.path.join(tmp, name), target)
            moved.append(name)
    except BaseException:
        for name in moved:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
        for name in replaced:
            with contextlib.suppress(OSError):
                os.replace(os.path.join(kept, name), os.path.join(folder, name))
        raise


def _destination_of(exc, tmp, folder):
    """Where the file a failure inside ``tmp`` concerns was going: the one the OS error
    names, else the one written last (Paddle's silently truncated file is the newest)."""
    name = getattr(exc, 'filename', None)
    if isinstance(name, (str, bytes)):
        name = os.path.abspath(os.fsdecode(name))
        if os.path.dirname(name) == tmp:
            return os.path.join(folder, os.path.basename(name))
    try:
        files = [entry for entry in os.scandir(tmp) if entry.is_file()]
        newest = max(files, key=lambda entry: entry.stat().st_mtime_ns, default=None)
    except OSError:
        newest = None
    return folder if newest is None else os.path.join(folder, newest.name)


@contextlib.contextmanager
def _full_disk_named(folder, destination):
    """Re-raise a failure a full disk under ``folder`` caused as the OS's error naming the
    file meant for the user, ``destination(exc)``: write() and close() name no file, the
    temporary one means nothing to the user, and torch and Paddle drop the errno."""
    try:
        yield
    except Exception as exc:
        error = disk_full_error(exc, folder, destination)
        if error is None:
            raise
        raise error from exc


def disk_full_error(exc, folder, destination):
    """An ``OSError`` (ENOSPC, EDQUOT or EFBIG) naming ``destination(exc)`` when ``exc``
    came from a full disk under ``folder``, else None: the OS said so, or a library said
    nothing of its own (our errors say theirs) and the file system has almost no free
    space left."""
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno not in DISK_FULL_ERRNOS:
            return None  # the OS gave another reason
        code = exc.errno
    elif getattr(exc, 'may_mean_a_full_disk', True) and _nearly_full(folder):
        code = errno.ENOSPC
    else:
        return None
    return OSError(code, os.strerror(code), destination(exc))


def _nearly_full(folder):
    """Whether the file system holding ``folder`` has less than ``NEARLY_FULL_BYTES`` free
    for this process (root may also use the blocks reserved for it)."""
    try:
        stat = os.statvfs(folder)
        free = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail
    except (OSError, AttributeError):  # gone, or no statvfs here (Windows)
        return False
    return stat.f_blocks > 0 and free * stat.f_frsize < NEARLY_FULL_BYTES  # 0: no size told
