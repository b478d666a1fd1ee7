"""The speed floor: a source slower than $PADDLE_DLA_SPEED_LIMIT bytes/s over the last
$PADDLE_DLA_SPEED_TIME seconds is abandoned at once, said in one line, leaves no partial file,
and the next source is tried. Small settings (1000 B/s over 1 s) keep each case to seconds."""
import hashlib
import json
import re
import subprocess
import sys
import time

import pytest

import paddle_dla
from paddle_dla.weights.download import DownloadError
from paddle_dla.weights.pretrained import PretrainedUnavailable
from helpers import REPO, child_env
from mirror_server import MirrorServer
from test_hostile_download import STEM, VARIANT, _files, cache, checkpoint, tls  # noqa: F401

TOO_SLOW = 'too slow: under 1,000 B/s for 1 s ($PADDLE_DLA_SPEED_LIMIT, $PADDLE_DLA_SPEED_TIME)'


@pytest.fixture
def floor(cache, monkeypatch):
    """1000 B/s over 1 s, and a deadline far off: only the floor can end a case in time."""
    monkeypatch.setenv('PADDLE_DLA_SPEED_LIMIT', '1000')
    monkeypatch.setenv('PADDLE_DLA_SPEED_TIME', '1')
    monkeypatch.setenv('PADDLE_DLA_DEADLINE', '120')
    monkeypatch.delenv('PADDLE_DLA_MIRROR', raising=False)  # the sources name the server
    return cache


def _publish(server, tmp_path, monkeypatch, data, *modes):
    """Serve ``data`` once per mode (None: served well), each its own source of VARIANT's
    official weights, in that order; returns their paths."""
    sha = hashlib.sha256(data).hexdigest()[:8]
    paths = [f'/source{i}/{STEM}-{sha}.pth' for i in range(len(modes))]
    for path, mode in zip(paths, modes):
        server.files[path] = data
        if mode:
            server.behaviour[path] = mode
    sources = [{'url': server.url + path, 'sha256_prefix': sha} for path in paths]
    override = tmp_path / 'override.json'
    override.write_text(json.dumps({f'{VARIANT}.official': {'sources': sources}}))
    monkeypatch.setenv('PADDLE_DLA_WEIGHTS_OVERRIDE', str(override))
    return paths


def _said(stderr, line):
    """How many times ``line`` is printed, whole, among the progress bar's redraws."""
    return sum(part.strip() == line for part in stderr.splitlines())


@pytest.mark.parametrize('mode', ['drip', 'hang'])
def test_a_source_under_the_floor_is_abandoned_in_one_line(floor, tmp_path, monkeypatch,
                                                          checkpoint, capsys, mode):
    """'drip': a byte every 0.1 s, each read well within the per-read timeout. 'hang': 100
    bytes, then silence, with a per-read timeout longer than the test may take, so only the
    watchdog shutting the socket down wakes the blocked read."""
    if mode == 'hang':
        monkeypatch.setenv('PADDLE_DLA_TIMEOUT', '60')
    with MirrorServer() as server:
        (path,) = _publish(server, tmp_path, monkeypatch, checkpoint, mode)
        start = time.monotonic()
        with pytest.raises(PretrainedUnavailable, match=re.escape(f'{path}: {TOO_SLOW}')):
            paddle_dla.create_model(VARIANT, pretrained=True)
        elapsed = time.monotonic() - start
        assert server.requests[path] == 1  # too slow is not retried
    assert 0.9 < elapsed < 6
    assert _said(capsys.readouterr().err, f'{server.url}{path}: {TOO_SLOW}') == 1
    assert _files(floor) == []  # the .part file that had some bytes is gone


@pytest.mark.full  # the fast tier keeps one case of this item
def test_a_stalled_transfer_over_tls_is_woken_too(floor, tmp_path, monkeypatch, checkpoint,
                                                  tls):
    context, cert = tls
    monkeypatch.setenv('SSL_CERT_FILE', str(cert))
    monkeypatch.setenv('PADDLE_DLA_TIMEOUT', '60')
    with MirrorServer(ssl_context=context) as server:
        (path,) = _publish(server, tmp_path, monkeypatch, checkpoint, 'hang')
        start = time.monotonic()
        with pytest.raises(PretrainedUnavailable, match=re.escape(f'{path}: {TOO_SLOW}')):
            paddle_dla.create_model(VARIANT, pretrained=True)
        assert time.monotonic() - start < 6
    assert _files(floor) == []


@pytest.mark.full  # the fast tier keeps one case of this item
def test_a_slow_but_steady_transfer_is_not_cut_off(floor, tmp_path, monkeypatch, checkpoint):
    """The body over 3 s, three times the window, every window well above the floor."""
    with MirrorServer() as server:
        (path,) = _publish(server, tmp_path, monkeypatch, checkpoint, 'slow')
        paddle_dla.create_model(VARIANT, pretrained=True)
        assert server.requests[path] == 1
    assert _files(floor) == [f'{VARIANT}-official.pdparams']


@pytest.mark.full  # the fast tier keeps one case of this item
def test_the_command_line_says_so_and_uses_the_next_source(floor, tmp_path, monkeypatch,
                                                           checkpoint):
    with MirrorServer() as server:
        dripping, good = _publish(server, tmp_path, monkeypatch, checkpoint, 'drip', None)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'cache', 'fetch', '--model',
                               VARIANT], capture_output=True, text=True, cwd=REPO,
                              timeout=300, env=child_env())
        elapsed = time.monotonic() - start
        assert (server.requests[dripping], server.requests[good]) == (1, 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _said(proc.stderr, f'{server.url}{dripping}: {TOO_SLOW}') == 1, proc.stderr
    assert f'{VARIANT}.official: ready ' in proc.stdout
    assert _files(floor) == [f'{VARIANT}-official.pdparams']  # no .part, no raw download
    assert elapsed < 120


@pytest.mark.parametrize('name, value, says', [
    ('PADDLE_DLA_SPEED_LIMIT', 'fast', 'a non-negative number of bytes per second'),
    *(pytest.param(*case, marks=pytest.mark.full) for case in (
        ('PADDLE_DLA_SPEED_LIMIT', '-1', 'a non-negative number of bytes per second'),
        ('PADDLE_DLA_SPEED_LIMIT', 'nan', 'a non-negative number of bytes per second'),
        ('PADDLE_DLA_SPEED_TIME', '0', 'a positive number of seconds'),
        ('PADDLE_DLA_SPEED_TIME', 'soon', 'a positive number of seconds'))),
    ('PADDLE_DLA_SPEED_TIME', 'inf', 'a positive number of seconds'),
])
def test_bad_settings_are_refused_before_connecting(floor, tmp_path, monkeypatch, checkpoint,
                                                    name, value, says):
    monkeypatch.setenv(name, value)
    with MirrorServer() as server:
        (path,) = _publish(server, tmp_path, monkeypatch, checkpoint, None)
        with pytest.raises(DownloadError,  # the setting's fault alone, not every source's
                           match='^' + re.escape(f'${name} must be {says}') + '.*' + re.escape(
                               repr(value))):
            paddle_dla.create_model(VARIANT, pretrained=True)
        assert server.requests[path] == 0
    assert _files(floor) == []


@pytest.mark.full  # the fast tier keeps one case of this item
def test_a_limit_of_zero_turns_the_floor_off(floor, tmp_path, monkeypatch, checkpoint):
    """Then only the deadline ends a dripping server, as before there was a floor."""
    monkeypatch.setenv('PADDLE_DLA_SPEED_LIMIT', '0')
    monkeypatch.setenv('PADDLE_DLA_DEADLINE', '2')
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, checkpoint, 'drip')
        with pytest.raises(PretrainedUnavailable, match='not finished within the 2 s deadline'):
            paddle_dla.create_model(VARIANT, pretrained=True)
    assert _files(floor) == []
