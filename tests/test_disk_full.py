"""A real full disk (a 2 MiB tmpfs) under ``export``, ``to-torch`` and a download: one
stderr line gives the OS's reason and the file being written, the exit status is non-zero
and nothing partial is left. Mounting needs root; elsewhere these tests skip."""
import errno
import hashlib
import json
import os
import re
import subprocess
import sys

import paddle
import pytest

import paddle_dla
from helpers import REPO, child_env, stderr_lines
from mirror_server import MirrorServer
from torch_files import official_layout, save_state_dict

NO_SPACE = os.strerror(errno.ENOSPC).lower()  # 'no space left on device'
SMALL_FS = '2m'  # less than any dla_46_c file written below (5 MB each)


def _mount_small_fs(folder):
    """Mount a tmpfs of ``SMALL_FS`` on ``folder``; the reason it cannot be done, or None."""
    if not hasattr(os, 'geteuid') or os.geteuid() != 0:
        return 'mounting a small tmpfs needs root'
    try:
        proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={SMALL_FS},mode=0755',
                               'tmpfs', str(folder)], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f'cannot run mount: {exc}'
    if proc.returncode != 0:
        return f'mount -t tmpfs is not permitted here: {proc.stderr.strip()}'
    return None


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a file system of 2 MiB: every file below overflows it."""
    folder = tmp_path / 'small'
    folder.mkdir()
    reason = _mount_small_fs(folder)
    if reason:
        pytest.skip(f'no real full disk: {reason}')
    try:
        yield folder
    finally:
        if subprocess.run(['umount', str(folder)], capture_output=True).returncode != 0:
            subprocess.run(['umount', '-l', str(folder)], capture_output=True)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'dla_46_c.pdparams'
    paddle.save(paddle_dla.create_model('dla_46_c').state_dict(), str(path))
    return path


def _run(*args, **extra):
    """``paddle-dla ARGS`` with ``extra`` in its environment; the loopback server is
    reached directly, not through a proxy."""
    env = child_env(**{name: str(value) for name, value in extra.items()})
    for proxy in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        env.pop(proxy, None)
    return subprocess.run([sys.executable, '-m', 'paddle_dla', *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


def _full_disk_line(proc, path_pattern):
    """The one stderr line that says the disk is full and names the file (a regex)."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr, proc.stderr
    found = [line for line in stderr_lines(proc)
             if re.search(f'{re.escape(NO_SPACE)} writing {path_pattern}', line, re.I)]
    assert found, proc.stderr
    return found[0]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*')
                  if p.is_file() and '.locks' not in p.parts)


@pytest.mark.paddle_compat
def test_export_onto_a_full_disk_names_the_reason_and_the_file(full_disk, weights):
    out = full_disk / 'exported'
    proc = _run('export', '--model', 'dla_46_c', '--weights', weights, '--out', out)
    line = _full_disk_line(proc, re.escape(str(out / 'dla_46_c')) + r'(\.\w+)+$')
    assert stderr_lines(proc) == [line]
    assert line.startswith('paddle-dla export: error: ')
    assert _files(full_disk) == [] and not out.exists()


@pytest.mark.full  # the fast tier keeps one case of this item
@pytest.mark.torch
def test_to_torch_onto_a_full_disk_names_the_reason_and_the_file(full_disk, weights):
    """torch.save reports a full disk as "unexpected pos" without the errno."""
    pytest.importorskip('torch')
    dst = full_disk / 'dla_46_c.pth'
    proc = _run('to-torch', '--src', weights, '--dst', dst)
    line = _full_disk_line(proc, re.escape(str(dst)) + '$')
    assert stderr_lines(proc) == [line]
    assert line == f'paddle-dla to-torch: error: {NO_SPACE} writing {dst}'
    assert _files(full_disk) == []


@pytest.mark.full  # the fast tier keeps one case of this item
def test_safetensors_onto_a_full_disk_names_the_reason_and_the_file(full_disk, weights):
    dst = full_disk / 'dla_46_c.safetensors'
    proc = _run('to-torch', '--src', weights, '--dst', dst)
    line = _full_disk_line(proc, re.escape(str(dst)) + '$')
    assert stderr_lines(proc) == [line]
    assert _files(full_disk) == []


def test_a_download_into_a_full_cache_names_the_reason_and_the_file(full_disk, tmp_path):
    """Published weights fetched into a cache on a full disk (``PADDLE_DLA_HOME``)."""
    raw = tmp_path / 'raw.pth'
    save_state_dict(official_layout('dla_46_c'), raw)
    data = raw.read_bytes()
    sha = hashlib.sha256(data).hexdigest()[:8]
    url_path = f'/dla/dla46_c-{sha}.pth'
    override = tmp_path / 'override.json'
    override.write_text(json.dumps({'dla_46_c.official': {'sources': [
        {'url': 'https://weights.example.org' + url_path, 'sha256_prefix': sha}]}}))
    with MirrorServer() as server:
        server.files[url_path] = data
        proc = _run('export', '--model', 'dla_46_c', '--out', tmp_path / 'exported',
                    PADDLE_DLA_HOME=full_disk, PADDLE_DLA_WEIGHTS_OVERRIDE=override,
                    PADDLE_DLA_MIRROR=server.url, PADDLE_DLA_TIMEOUT=5)
        assert server.requests[url_path] == 1  # a full disk is not worth a retry
    line = _full_disk_line(proc, re.escape(str(full_disk)) + r'/\S+$')
    said = [text for text in stderr_lines(proc) if '%|' not in text]  # not the progress bar
    assert said == [line]  # the disk, not the source, and no list of sources
    assert _files(full_disk) == []
    assert not (tmp_path / 'exported').exists()


def test_a_nearly_full_disk_is_blamed_only_where_a_library_said_nothing(full_disk):
    """With under 1 MiB free, a writer's reasonless failure is put down to the disk; an
    error of ours (a hash mismatch, say) keeps its own reason."""
    from paddle_dla.core.atomic import atomic_output
    from paddle_dla.weights.download import DownloadError
    filler = full_disk / 'filler'
    with open(filler, 'wb') as f:
        f.write(b'\0' * ((2 << 20) - (512 << 10)))  # SMALL_FS less half a MiB
    target = full_disk / 'out.bin'
    with pytest.raises(DownloadError, match='sha256 mismatch'):
        with atomic_output(target):
            raise DownloadError('sha256 mismatch: expected 1234abcd')
    with pytest.raises(OSError, match='No space left on device') as err:
        with atomic_output(target):
            raise RuntimeError('unexpected pos 1891904 vs 1891800')  # torch's words
    assert err.value.filename == str(target)
    filler.unlink()
    assert _files(full_disk) == []
