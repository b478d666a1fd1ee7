"""How a command line tool reports a failure: the error on one short line, and the details
of a message of ours written on several lines (the sources tried, the command to run by
hand) on the lines below it, indented; every other message on one line, as always."""
import errno
import os
import socket
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from paddle_dla.core.errors import PaddleDLAError, ProgressStream, UsageError, one_line, report
from paddle_dla.weights.registry import get_weights
from helpers import REPO, child_env, stderr_lines


def _reported(capsys, exc):
    ProgressStream.line_open = False  # no bar of an earlier test is showing here
    report('tool', exc)
    captured = capsys.readouterr()
    assert captured.out == ''
    return captured.err.splitlines()


def test_a_one_line_error_is_reported_as_before(capsys):
    exc = UsageError('--dst x.pth is the source file itself')
    assert _reported(capsys, exc) == ['tool: error: --dst x.pth is the source file itself']


def test_a_foreign_multi_line_message_stays_on_one_line(capsys):
    """Paddle's and others' messages run to pages: only ours are laid out on purpose."""
    exc = RuntimeError('(InvalidArgument) shape mismatch\n  [Hint: ...]\n\nC++ Traceback')
    assert _reported(capsys, exc) == [f'tool: error: {one_line(exc)}']
    assert one_line(exc) == '(InvalidArgument) shape mismatch [Hint: ...] C++ Traceback'


def test_the_details_of_ours_go_below_the_error(capsys):
    exc = PaddleDLAError('could not get it', details=[
        'sources tried:', '  - http://a/x: refused', '',
        'To proceed by hand: run \x1b[31mthis\x1b[0m\t'])
    assert _reported(capsys, exc) == [
        'tool: error: could not get it',
        '  sources tried:',
        '    - http://a/x: refused',
        '  To proceed by hand: run \\x1b[31mthis\\x1b[0m']
    assert str(exc).splitlines()[0] == 'could not get it'  # str() still tells it all
    assert 'http://a/x: refused' in str(exc)


def test_a_newline_in_a_message_never_starts_a_line(capsys):
    """A name taken from a file or a path may hold a newline: it stays on the error's line."""
    exc = PaddleDLAError('bad \x1b]0;title\x07  name\nFAKE: all good')
    assert _reported(capsys, exc) == ['tool: error: bad \\x1b]0;title\\x07 name FAKE: all good']


@pytest.mark.full  # the fast tier keeps one case of this item
def test_a_newline_in_a_path_stays_on_the_error_line_of_a_command(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'eval', '--model', 'dla_46_c',
                           '--data-dir', str(tmp_path / 'nosuch\nFAKE: all good')],
                          capture_output=True, text=True, timeout=120, env=child_env())
    assert proc.returncode != 0
    (line,) = stderr_lines(proc)
    assert line.startswith('paddle-dla eval: error: ') and 'FAKE: all good' in line, line


def test_a_full_disk_says_so_in_the_os_words_with_the_file():
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/data/out/m.pdiparams')
    assert one_line(exc) == 'no space left on device writing /data/out/m.pdiparams'
    assert one_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) == \
        'no space left on device'


def _closed_port():
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _run(*args, **extra):
    env = child_env(**extra)
    for proxy in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        env.pop(proxy, None)
    return subprocess.run([sys.executable, '-m', 'paddle_dla', *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)


@pytest.mark.full  # the fast tier keeps one case of this item
def test_offline_predict_gives_a_short_error_then_the_sources_and_the_way_out(tmp_path):
    image = tmp_path / 'cat.png'
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    proc = _run('predict', image, '--model', 'dla_34', PADDLE_DLA_HOME=tmp_path / 'cache',
                PADDLE_DLA_MIRROR=f'http://127.0.0.1:{_closed_port()}')
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr
    first, *details = stderr_lines(proc)
    assert first.startswith('paddle-dla predict: error: could not get pretrained weights '
                            'dla_34'), first
    assert len(first) < 200, first
    assert details and all(line.startswith('  ') for line in details), details
    for source in get_weights('dla_34').sources:  # each source on a line of its own
        path = urllib.parse.urlsplit(source.url).path
        assert sum(path in line for line in details) >= 1, (path, details)
        assert path not in first
    way_out = [line for line in details if 'paddle-dla convert --src' in line]
    assert len(way_out) == 1 and 'To proceed by hand' in way_out[0], details


@pytest.mark.full  # the fast tier keeps one case of this item
def test_a_one_line_command_error_is_one_line(tmp_path):
    src = tmp_path / 'same.pdparams'
    src.write_bytes(b'')
    proc = _run('to-torch', '--src', src, '--dst', src)
    assert proc.returncode == 2
    assert stderr_lines(proc) == [
        f'paddle-dla to-torch: error: --dst {src} is the source file itself; converting '
        f'would replace it: choose another destination']


@pytest.mark.parametrize('leave', [True, False])
def test_an_error_after_a_progress_bar_starts_a_line_of_its_own(leave):
    """A bar on stderr leaves its line open; the error must not join it."""
    code = ('import sys, tqdm\n'
            'from paddle_dla.core.errors import PaddleDLAError, report\n'
            f'bar = tqdm.tqdm(total=10, file=sys.stderr, unit="img", leave={leave})\n'
            'bar.update(3)\n'
            'report("tool", PaddleDLAError("it broke"))\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, env=child_env())
    assert 'tool: error: it broke' in proc.stderr.split('\n'), repr(proc.stderr)


@pytest.mark.parametrize('how', ['closed mid-line', 'interrupted', 'left open'])
def test_an_error_after_the_evaluation_bar_starts_a_line_of_its_own(how):
    """However the bar was left (a SIGTERM can land in its close after it has left the list
    of live bars and before it ends its line), the error starts a line of its own."""
    code = ('import tqdm\n'
            'from paddle_dla.core.errors import PaddleDLAError, report\n'
            'from paddle_dla.evaluation.runner import progress_bar\n'
            'bar = progress_bar(10, "dla_34")\n'
            'bar.update(3)\n'
            + {'closed mid-line': 'bar.disable = True; bar._decr_instances(bar)\n',
               'interrupted': 'bar.fp.write("\\r 4/10 [")\n',
               'left open': ''}[how]
            + 'report("tool", PaddleDLAError("it broke"))\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, env=child_env())
    assert proc.returncode == 0, proc.stderr
    assert 'tool: error: it broke' in proc.stderr.split('\n'), repr(proc.stderr)
