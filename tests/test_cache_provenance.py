"""Only a file verified at its registry entry's strongest check becomes cached official
weights, whichever way it arrives: the converter (default or explicit destination), a
download, or ``cache fetch``. dla_34's official file is known by its full SHA-384, so a file
matching merely a 32-bit name prefix of one of its sources must never fill its cache slot.

A real 32-bit collision takes minutes to find, so the tests give a source the prefix of the
file they made: in the registry itself (the attack as it was: the timm mirror's prefix-only
source) or through ``$PADDLE_DLA_WEIGHTS_OVERRIDE`` (what a mirror configuration can say;
it may add sources, never lower the bar)."""
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

import paddle_dla
from paddle_dla.weights.cache import cached_weights_path
from paddle_dla.cli import main as cli_main
from paddle_dla.weights.pretrained import PretrainedUnavailable
from paddle_dla.weights.registry import WEIGHTS, get_weights
from helpers import child_env, stderr_lines
from mirror_server import MirrorServer
from torch_files import official_layout, save_state_dict


@pytest.fixture(scope='module')
def dla34_file(tmp_path_factory):
    """A complete dla_34 checkpoint in torch's format (random values, written without torch)."""
    path = tmp_path_factory.mktemp('internet') / 'some_model_from_the_internet.pth'
    save_state_dict(official_layout('dla_34', dead_keys=False), path)
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / 'cache'
    monkeypatch.setenv('PADDLE_DLA_HOME', str(home))
    monkeypatch.delenv('PADDLE_DLA_WEIGHTS_OVERRIDE', raising=False)
    monkeypatch.delenv('PADDLE_DLA_ALLOW_UNVERIFIED', raising=False)
    for proxy in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        monkeypatch.delenv(proxy, raising=False)
    return home


def _digests(path):
    data = open(path, 'rb').read()
    return hashlib.sha256(data).hexdigest(), hashlib.sha384(data).hexdigest(), len(data)


def _override(tmp_path, monkeypatch, variant, sources):
    path = tmp_path / 'override.json'
    path.write_text(json.dumps({f'{variant}.official': {'sources': sources}}))
    monkeypatch.setenv('PADDLE_DLA_WEIGHTS_OVERRIDE', str(path))


def _copy(src, folder):
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    dst.write_bytes(src.read_bytes())
    return dst


def _cached(home):
    return sorted(p.name for p in home.glob('*.pdparams')) if home.exists() else []


def test_a_prefix_collision_with_the_timm_mirror_source_is_not_cached(home, tmp_path,
                                                                      monkeypatch, dla34_file,
                                                                      capsys):
    """The attack as reported: the registry's prefix-only source of dla_34 (the timm
    mirror's) names the file's own sha256 prefix; the full SHA-384 of the official file
    is known too. ``convert --src`` without ``--dst`` must write beside the source."""
    src = _copy(dla34_file, tmp_path / 'downloads')
    sha256 = _digests(src)[0]
    official = WEIGHTS[('dla_34', 'official')]
    sources = tuple(dataclasses.replace(s, sha256_prefix=sha256[:8]) if not s.sha384 and
                    s.sha256_prefix else s for s in official.sources)
    assert sources != official.sources and any(s.sha384 for s in sources)
    monkeypatch.setitem(WEIGHTS, ('dla_34', 'official'),
                        dataclasses.replace(official, sources=sources))
    assert cli_main(['convert', '--src', str(src)]) == 0
    err = capsys.readouterr().err
    assert 'is not cached as official weights' in err and 'SHA-384' in err, err
    assert _cached(home) == []
    assert (src.parent / 'some_model_from_the_internet.pdparams').is_file()


@pytest.mark.full  # the fast tier keeps one case of this item
def test_the_converter_caches_only_what_clears_the_bar(home, tmp_path, monkeypatch, dla34_file):
    """Through the command line: a prefix-only match converts beside the source with one
    warning; an explicit --dst naming the cache slot is refused; a SHA-384 match is cached."""
    src = _copy(dla34_file, tmp_path / 'downloads')
    sha256, sha384, size = _digests(src)
    _override(tmp_path, monkeypatch, 'dla_34', [
        {'url': f'https://mirror.example.org/dla34-{sha256[:8]}.pth', 'sha256_prefix': sha256[:8]}])

    def convert(*extra):
        return subprocess.run([sys.executable, '-m', 'paddle_dla', 'convert', '--src', str(src),
                               *extra], capture_output=True, text=True, timeout=300,
                              env=child_env())

    proc = convert()
    assert proc.returncode == 0, proc.stderr
    (warning,) = stderr_lines(proc)
    assert warning.startswith('paddle-dla convert: warning: ') and 'not cached as official' in warning
    assert 'sha256 prefix' in warning and 'SHA-384' in warning and str(src) in warning
    beside = src.parent / 'some_model_from_the_internet.pdparams'
    assert beside.is_file() and _cached(home) == []
    assert str(beside) in proc.stdout

    slot = cached_weights_path('dla_34', 'official')
    proc = convert('--dst', slot)
    assert proc.returncode != 0
    (line,) = stderr_lines(proc)
    assert line.startswith('paddle-dla convert: error: --dst ') and 'dla_34.official' in line, line
    assert 'SHA-384' in line and 'nothing was written' in line
    assert _cached(home) == [] and not list(home.glob('.*.tmp'))

    # The override may add the full digest of this very file: then it is the published
    # file at the entry's bar, and the converter caches it.
    _override(tmp_path, monkeypatch, 'dla_34', [
        {'url': f'https://mirror.example.org/dla34-{sha256[:8]}.pth', 'sha256_prefix': sha256[:8],
         'sha384': sha384, 'size': size}])
    proc = convert()
    assert proc.returncode == 0 and stderr_lines(proc) == [], proc.stderr
    assert _cached(home) == ['dla_34-official.pdparams']
    assert 'SHA-384 verified' in proc.stdout


def test_an_override_may_raise_the_bar_never_lower_it(home, tmp_path, monkeypatch):
    assert get_weights('dla_34').cache_bar == 'SHA-384'
    assert get_weights('dla_46_c').cache_bar == 'sha256 prefix'
    _override(tmp_path, monkeypatch, 'dla_34', [
        {'url': 'https://mirror.example.org/dla34-0123abcd.pth', 'sha256_prefix': '0123abcd'}])
    weights = get_weights('dla_34')
    assert [s.sha384 for s in weights.sources] == [None]  # only the weak source is left...
    assert weights.cache_bar == 'SHA-384'                 # ...and the bar stays
    assert weights.caches('SHA-384') and not weights.caches('sha256 prefix')
    assert not weights.caches(None)
    _override(tmp_path, monkeypatch, 'dla_46_c', [
        {'url': 'https://mirror.example.org/x.pth', 'sha384': 'ab' * 48, 'size': 10}])
    assert get_weights('dla_46_c').cache_bar == 'SHA-384'  # a stronger check raises it


def test_a_download_checked_only_by_prefix_is_used_but_not_cached(home, tmp_path, monkeypatch,
                                                                  dla34_file):
    """pretrained=True tries the sources that clear the bar first; one that answers only to
    a weaker check gives weights for this call, with a warning, and fills no cache slot."""
    data = dla34_file.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    official_sha384 = next(s for s in WEIGHTS[('dla_34', 'official')].sources if s.sha384)
    with MirrorServer() as server:
        weak = f'/mirror/dla34-{sha256[:8]}.pth'
        strong = '/official/dla34-ba72cf86.pth'
        server.files[weak] = data
        server.behaviour[strong] = '404'
        server.files[strong] = data
        _override(tmp_path, monkeypatch, 'dla_34', [
            {'url': 'https://weights.example.org' + weak, 'sha256_prefix': sha256[:8]},
            {'url': 'http://weights.example.org' + strong, 'sha256_prefix': 'ba72cf86',
             'sha384': official_sha384.sha384, 'size': official_sha384.size}])
        monkeypatch.setenv('PADDLE_DLA_MIRROR', server.url)
        with pytest.warns(UserWarning, match='weaker than the SHA-384 .* not cached'):
            model = paddle_dla.dla_34(pretrained=True)
        assert server.requests[strong] == 1 and server.requests[weak] == 1  # strong first
    assert model is not None and _cached(home) == []


@pytest.mark.full  # the fast tier keeps one case of this item
def test_cache_fetch_fills_no_slot_from_a_weaker_source(home, tmp_path, monkeypatch, dla34_file):
    data = dla34_file.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    with MirrorServer() as server:
        path = f'/mirror/dla34-{sha256[:8]}.pth'
        server.files[path] = data
        _override(tmp_path, monkeypatch, 'dla_34', [
            {'url': 'https://weights.example.org' + path, 'sha256_prefix': sha256[:8]}])
        proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'cache', 'fetch', '--model',
                               'dla_34', '--tag', 'official'], capture_output=True, text=True,
                              timeout=300, env=child_env(PADDLE_DLA_MIRROR=server.url))
    assert proc.returncode != 0
    assert 'dla_34.official: FAILED' in proc.stdout and 'nothing was cached' in proc.stdout
    assert _cached(home) == []


@pytest.mark.full  # the fast tier keeps one case of this item
def test_manual_instructions_name_a_source_that_fills_the_cache(home, monkeypatch):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv('PADDLE_DLA_MIRROR', f'http://127.0.0.1:{port}')
    with pytest.raises(PretrainedUnavailable) as err:
        paddle_dla.dla_34(pretrained=True)
    last = str(err.value).splitlines()[-1]
    assert 'fetch https://storage.openvinotoolkit.org/' in last
    assert 'paddle-dla convert --src dla34-ba72cf86.pth' in last and '--dst' not in last
    assert os.path.basename(cached_weights_path('dla_34', 'official')) not in last


def _registered(tmp_path, monkeypatch, variant, path):
    """An override naming ``path``'s full digest: that content is the published file."""
    sha256, sha384, size = _digests(path)
    _override(tmp_path, monkeypatch, variant, [
        {'url': f'https://mirror.example.org/x-{sha256[:8]}.pth', 'sha256_prefix': sha256[:8],
         'sha384': sha384, 'size': size}])


def test_what_is_verified_is_what_is_converted(home, tmp_path, monkeypatch, capsys):
    """The file is swapped for another between its hashing and its reading (the swap is
    made at that moment here; a link flipping between two files does it by chance): the
    cache must hold the verified weights, not the swapped-in ones."""
    import numpy as np
    from paddle_dla.weights.checkpoint import load_pdparams
    from paddle_dla.weights.convert import pipeline
    good, evil = tmp_path / 'good.pth', tmp_path / 'evil.pth'
    save_state_dict(official_layout('dla_46_c', seed=1), good)
    save_state_dict(official_layout('dla_46_c', seed=2), evil)
    _registered(tmp_path, monkeypatch, 'dla_46_c', good)
    src = tmp_path / 'shared.pth'
    src.write_bytes(good.read_bytes())
    identify = pipeline.identify

    def swap_then_identify(*args):
        src.write_bytes(evil.read_bytes())
        return identify(*args)
    monkeypatch.setattr(pipeline, 'identify', swap_then_identify)
    assert cli_main(['convert', '--src', str(src), '--model', 'dla_46_c']) == 0
    assert 'SHA-384 verified' in capsys.readouterr().out
    cached = load_pdparams(cached_weights_path('dla_46_c', 'official'))
    expected = pipeline.convert_checkpoint(good, 'dla_46_c', check_hash=False).state
    assert sorted(cached) == sorted(expected)
    assert all(np.array_equal(cached[k], expected[k]) for k in expected)


@pytest.mark.full  # the fast tier keeps one case of this item
def test_the_cache_slot_is_refused_under_another_name_of_its_folder(home, tmp_path,
                                                                    dla34_file):
    """A bind mount of the cache folder names the empty slot without any link to follow."""
    alias = tmp_path / 'alias'
    alias.mkdir()
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(['mount', '--bind', str(home), str(alias)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f'mount --bind is not permitted here: {proc.stderr.strip()}')
    try:
        src = _copy(dla34_file, tmp_path / 'downloads')
        proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'convert', '--src', str(src),
                               '--dst', str(alias / 'dla_34-official.pdparams')],
                              capture_output=True, text=True, timeout=300, env=child_env())
        assert proc.returncode != 0
        (line,) = stderr_lines(proc)
        assert 'is the cached dla_34.official weights' in line, line
        assert _cached(home) == []
    finally:
        subprocess.run(['umount', str(alias)], capture_output=True)


@pytest.mark.full  # the fast tier keeps one case of this item
def test_an_override_with_a_weak_check_is_refused(home, tmp_path, monkeypatch, dla34_file):
    """A 4-bit "prefix" would let any file through as published."""
    src = _copy(dla34_file, tmp_path / 'downloads')
    sha256 = _digests(src)[0]
    _override(tmp_path, monkeypatch, 'dla_46_c', [
        {'url': 'https://mirror.example.org/x.pth', 'sha256_prefix': sha256[:1]}])
    proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'convert', '--src', str(src)],
                          capture_output=True, text=True, timeout=300, env=child_env())
    assert proc.returncode != 0
    (line,) = stderr_lines(proc)
    assert 'is not 8 to 64 hex digits' in line and 'PADDLE_DLA_WEIGHTS_OVERRIDE' in line, line
    assert _cached(home) == [] and not (src.parent / f'{src.stem}.pdparams').exists()


@pytest.mark.full  # the fast tier keeps one case of this item
def test_the_old_allow_unverified_option_says_what_took_its_place(home):
    proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'cache', 'fetch',
                           '--allow-unverified'], capture_output=True, text=True, timeout=120,
                          env=child_env())
    assert proc.returncode != 0
    (line,) = stderr_lines(proc)
    assert '--allow-unverified is gone' in line and 'PADDLE_DLA_ALLOW_UNVERIFIED=1' in line
    assert _cached(home) == []


def test_a_file_larger_than_any_checkpoint_is_refused_before_it_is_read(tmp_path):
    """The converter reads a file once into memory: a (sparse) 3 GiB file is refused by its
    size, in one line, under a memory bound it could not be read within."""
    from hostile import assert_refused, run_module
    huge = tmp_path / 'huge.pth'
    with open(huge, 'wb') as f:
        f.truncate(3 << 30)
    dst = tmp_path / 'out.pdparams'
    proc = run_module('convert', '--src', huge, '--dst', dst, memory=2 << 30)
    assert_refused(proc, 'huge.pth', 'more than 2,147,483,648 bytes', absent=[dst])
