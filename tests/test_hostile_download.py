"""Downloads against hostile or broken servers and caches: every fetch ends, every file is
verified at the strongest check known, and nothing half-written is left behind."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from filelock import FileLock

import paddle_dla
from paddle_dla.weights.pretrained import CacheBusy, PretrainedUnavailable
from paddle_dla.weights.registry import get_weights
from helpers import REPO
from mirror_server import MirrorServer
from torch_files import official_layout, save_state_dict

VARIANT, STEM = 'dla_46_c', 'dla46_c'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    home = tmp_path / 'cache'
    monkeypatch.setenv('PADDLE_DLA_HOME', str(home))
    monkeypatch.setenv('PADDLE_DLA_TIMEOUT', '2')
    monkeypatch.delenv('PADDLE_DLA_ALLOW_UNVERIFIED', raising=False)
    for proxy in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        monkeypatch.delenv(proxy, raising=False)  # the loopback servers are reached directly
    return home


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The bytes of an official dla_46_c checkpoint: every key it has, its dead ones
    included, in torch's zip format (written without torch; random values)."""
    path = tmp_path_factory.mktemp('published') / 'raw.pth'
    save_state_dict(official_layout(VARIANT), path)
    return path.read_bytes()


def _serve(server, tmp_path, monkeypatch, data, variant=VARIANT, stem=STEM, **checks):
    """Serve ``data`` as the only source of ``variant``'s official weights; ``checks`` are
    the source's sha256_prefix / sha384 / size (default: the true sha256 prefix)."""
    sha = hashlib.sha256(data).hexdigest()[:8]
    path = f'/dla/{stem}-{sha}.pth'
    server.files[path] = data
    source = {'url': 'https://weights.example.org' + path, 'sha256_prefix': sha, **checks}
    override = tmp_path / 'override.json'
    override.write_text(json.dumps({f'{variant}.official': {'sources': [source]}}))
    monkeypatch.setenv('PADDLE_DLA_WEIGHTS_OVERRIDE', str(override))
    monkeypatch.setenv('PADDLE_DLA_MIRROR', server.url)
    return path


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*')
                  if p.is_file() and '.locks' not in p.parts) if folder.exists() else []


@pytest.mark.parametrize('mode', ['drip', pytest.param('drip-headers', marks=pytest.mark.full)])
def test_a_dripping_server_is_cut_off_at_the_deadline(cache, tmp_path, monkeypatch, checkpoint,
                                                      mode):
    """One byte every 0.1 s never trips the per-read timeout; the overall deadline ends it."""
    monkeypatch.setenv('PADDLE_DLA_DEADLINE', '2')
    with MirrorServer() as server:
        path = _serve(server, tmp_path, monkeypatch, checkpoint)
        server.behaviour[path] = mode
        start = time.monotonic()
        with pytest.raises(PretrainedUnavailable, match='not finished within the 2 s deadline'):
            paddle_dla.create_model(VARIANT, pretrained=True)
        assert time.monotonic() - start < 8
        assert server.requests[path] == 1  # a deadline is not retried
    assert _files(cache) == []


def test_the_lock_wait_is_bounded_and_says_what_to_do(cache, monkeypatch):
    monkeypatch.setenv('PADDLE_DLA_LOCK_TIMEOUT', '1')
    lock_dir = cache / '.locks'
    lock_dir.mkdir(parents=True)
    with FileLock(str(lock_dir / f'{VARIANT}-official.pdparams.lock')):
        code = ('import paddle_dla\ntry:\n    paddle_dla.dla_46_c(pretrained=True)\n'
                'except Exception as e:\n    print(type(e).__name__, e)')
        start = time.monotonic()
        proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                              cwd=REPO, timeout=120, env=dict(os.environ))
        elapsed = time.monotonic() - start
    assert proc.stdout.startswith('CacheBusy another process has been fetching '
                                  'dla_46_c.official'), proc.stdout + proc.stderr
    assert 'PADDLE_DLA_LOCK_TIMEOUT' in proc.stdout and '.lock' in proc.stdout
    assert elapsed < 60
    assert issubclass(CacheBusy, paddle_dla.core.errors.PaddleDLAError)


def test_stale_partial_files_are_removed_by_the_next_download(cache, tmp_path, monkeypatch,
                                                               checkpoint):
    with MirrorServer() as server:
        path = _serve(server, tmp_path, monkeypatch, checkpoint)
        downloads = cache / 'downloads'
        downloads.mkdir(parents=True)
        stale = downloads / f'.{os.path.basename(path)}.k1ll3d.part'
        stale.write_bytes(b'x' * 1000)  # what a killed download leaves
        tmp_target = cache / f'.{VARIANT}-official.pdparams.k1ll3d.tmp'
        tmp_target.write_bytes(b'y' * 1000)
        paddle_dla.create_model(VARIANT, pretrained=True)
    assert _files(cache) == [f'{VARIANT}-official.pdparams']


def test_a_prefix_collision_is_refused_where_the_full_digest_is_known(cache, tmp_path,
                                                                      monkeypatch, checkpoint):
    """The served file matches the 32-bit name prefix (injected: finding a real collision
    takes minutes), but the registry knows the published file's SHA-384 and size."""
    official = next(s for s in get_weights('dla_34').sources if s.sha384)
    with MirrorServer() as server:
        _serve(server, tmp_path, monkeypatch, checkpoint, variant='dla_34', stem='dla34',
               sha384=official.sha384)
        with pytest.raises(PretrainedUnavailable, match='SHA-384 mismatch'):
            paddle_dla.create_model('dla_34', pretrained=True)
        _serve(server, tmp_path, monkeypatch, checkpoint, variant='dla_34', stem='dla34',
               size=official.size)
        with pytest.raises(PretrainedUnavailable, match='size mismatch'):
            paddle_dla.create_model('dla_34', pretrained=True)
    assert _files(cache) == []


def test_a_full_digest_that_matches_is_accepted(cache, tmp_path, monkeypatch, checkpoint):
    with MirrorServer() as server:
        _serve(server, tmp_path, monkeypatch, checkpoint,
               sha384=hashlib.sha384(checkpoint).hexdigest(), size=len(checkpoint))
        paddle_dla.create_model(VARIANT, pretrained=True)
    assert _files(cache) == [f'{VARIANT}-official.pdparams']


def test_a_server_sending_more_than_the_published_size_is_cut_off(cache, tmp_path,
                                                                 monkeypatch, checkpoint):
    with MirrorServer() as server:
        path = _serve(server, tmp_path, monkeypatch, checkpoint, size=len(checkpoint))
        server.behaviour[path] = 'oversize'
        with pytest.raises(PretrainedUnavailable, match='size mismatch'):
            paddle_dla.create_model(VARIANT, pretrained=True)
    assert _files(cache) == []


def test_a_source_without_a_hash_needs_an_explicit_opt_in(cache, tmp_path, monkeypatch,
                                                         checkpoint):
    with MirrorServer() as server:
        path = _serve(server, tmp_path, monkeypatch, checkpoint, sha256_prefix=None)
        with pytest.raises(PretrainedUnavailable,
                           match='skipped, no published hash .*PADDLE_DLA_ALLOW_UNVERIFIED=1'):
            paddle_dla.create_model(VARIANT, pretrained=True)
        assert server.requests[path] == 0
        monkeypatch.setenv('PADDLE_DLA_ALLOW_UNVERIFIED', '1')
        with pytest.warns(UserWarning, match=f'using {server.url}{path} UNVERIFIED'):
            paddle_dla.create_model(VARIANT, pretrained=True)
    assert _files(cache) == []  # used once, never cached as the published weights


def test_registry_prefers_https_and_the_strongest_check():
    for weights in paddle_dla.weights.registry.list_weights():
        keys = [paddle_dla.weights.registry.preference(s) for s in weights.sources]
        assert keys == sorted(keys), weights.name
    first = get_weights('dla_34').sources[0]
    assert first.url.startswith('https://storage.openvinotoolkit.org/') and first.sha384
    assert first.size == 63228658 and len(first.sha384) == 96


@pytest.fixture(scope='module')
def tls(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 that the client is told to trust."""
    import ssl
    if shutil.which('openssl') is None:
        pytest.skip('openssl is needed to make a test certificate')
    folder = tmp_path_factory.mktemp('tls')
    key, cert = folder / 'key.pem', folder / 'cert.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
                    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
                    '-keyout', str(key), '-out', str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context, cert


def test_a_redirect_from_https_to_plain_http_is_refused(cache, tmp_path, monkeypatch,
                                                        checkpoint, tls):
    context, cert = tls
    monkeypatch.setenv('SSL_CERT_FILE', str(cert))
    with MirrorServer() as plain, MirrorServer(ssl_context=context) as secure:
        path = _serve(plain, tmp_path, monkeypatch, checkpoint)
        secure.redirects[path] = plain.url + path
        monkeypatch.setenv('PADDLE_DLA_MIRROR', secure.url)
        with pytest.raises(PretrainedUnavailable, match='refused a redirect from HTTPS to http'):
            paddle_dla.create_model(VARIANT, pretrained=True)
        assert plain.requests[path] == 0
        # Over HTTPS all the way, the same file is fetched.
        secure.files[path] = checkpoint
        del secure.redirects[path]
        paddle_dla.create_model(VARIANT, pretrained=True)
    assert _files(cache) == [f'{VARIANT}-official.pdparams']


def test_a_body_of_unknown_length_is_capped(cache, tmp_path, monkeypatch, checkpoint):
    """Without a Content-Length or a published size, a server may still not fill the disk."""
    monkeypatch.setattr(paddle_dla.weights.download, 'MAX_UNKNOWN_SIZE', 4096)
    with MirrorServer() as server:
        path = _serve(server, tmp_path, monkeypatch, checkpoint)
        server.behaviour[path] = 'no-length'
        with pytest.raises(PretrainedUnavailable, match='more than the 4,096 bytes expected'):
            paddle_dla.create_model(VARIANT, pretrained=True)
        monkeypatch.setattr(paddle_dla.weights.download, 'MAX_UNKNOWN_SIZE', 2 << 30)
        paddle_dla.create_model(VARIANT, pretrained=True)  # the same body, within the cap
    assert _files(cache) == [f'{VARIANT}-official.pdparams']


@pytest.mark.full
def test_cache_fetch_never_caches_a_source_without_a_hash(cache, tmp_path, monkeypatch,
                                                          checkpoint):
    """Unhashed sources are skipped; even where the user allows them, what they give is not
    verified and so never becomes the cached published weights."""
    with MirrorServer() as server:
        _serve(server, tmp_path, monkeypatch, checkpoint, sha256_prefix=None)
        run = lambda **env: subprocess.run(
            [sys.executable, os.path.join(REPO, 'tools/torch2paddle.py'), '--all', '--model',
             VARIANT, '--tag', 'official'], capture_output=True, text=True,
            cwd=REPO, timeout=300, env=dict(os.environ, **env))
        proc = run()
        assert proc.returncode != 0 and 'skipped, no published hash' in proc.stdout
        assert _files(cache) == []
        proc = run(PADDLE_DLA_ALLOW_UNVERIFIED='1')
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert 'UNVERIFIED' in proc.stderr and 'nothing was cached' in proc.stdout
    assert _files(cache) == []


def test_the_http_proxy_variable_is_honoured(cache, tmp_path, monkeypatch, checkpoint):
    """Behind a proxy, downloads go through it (the loopback server plays the proxy)."""
    with MirrorServer() as proxy:
        path = _serve(proxy, tmp_path, monkeypatch, checkpoint)
        monkeypatch.setenv('PADDLE_DLA_MIRROR', 'http://weights.internal')
        proxy.files['http://weights.internal' + path] = checkpoint
        monkeypatch.setenv('http_proxy', proxy.url)
        monkeypatch.delenv('no_proxy', raising=False)
        monkeypatch.delenv('NO_PROXY', raising=False)
        paddle_dla.create_model(VARIANT, pretrained=True)
        assert proxy.requests['http://weights.internal' + path] == 1
    assert _files(cache) == [f'{VARIANT}-official.pdparams']
