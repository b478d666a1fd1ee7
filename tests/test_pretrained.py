"""pretrained=True: registry, download through a loopback mirror, verification, cache, locking."""
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import numpy as np
import pytest

import paddle_dla
from paddle_dla.weights.pretrained import PretrainedUnavailable
from paddle_dla.weights.registry import PADDLE_PORT_TABLE, TIMM_TABLE, WEIGHTS, get_weights, list_weights
from helpers import FLOAT32_LIMIT, REPO, relative_error, run_cli, run_paddle, top1_agrees
from mirror_server import MirrorServer

# The published figures, kept in the repository so the registry is checked everywhere; where
# the project's shared reference file lies beside the checkout, the copy must equal it.
PUBLISHED = os.path.join(REPO, 'tests', 'data', 'published_accuracy.md')
REFERENCE = os.path.join(os.path.dirname(REPO), 'shared', 'REFERENCE.md')
ACCURACY_SECTION = '## 4. Published ImageNet-1k validation accuracy'


def published_table(path=PUBLISHED):
    """``{variant: {'official': (top1, top5), 'tricks': (top1, top5) or None, 'params_m':
    float, 'gmacs': float}}`` from the accuracy table of a file."""
    text = open(path, encoding='utf-8').read()
    start = text.find(ACCURACY_SECTION)
    assert start >= 0, f'{path} lost its section "{ACCURACY_SECTION}"'
    section = text[start:].split('\n## ', 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip('|').split('|')]
            for line in section.splitlines() if line.startswith('|')]
    header = [h.lower() for h in rows[0]]

    def column(word):
        (index,) = [i for i, h in enumerate(header) if word in h]
        return index

    official, port = column('official weights'), column('paddle port')
    params, gmacs = column('params'), column('gmacs')
    pair = re.compile(r'^(\d+\.\d+) / (\d+\.\d+)')
    table = {}
    for row in rows[2:]:
        timm_figures = pair.match(row[official])
        port_figures = pair.match(row[port])
        table[row[0]] = {
            'official': tuple(map(float, timm_figures.groups())),
            'tricks': (tuple(map(float, port_figures.groups()))
                       if port_figures and '+tricks' in row[port] else None),
            'params_m': float(row[params]), 'gmacs': float(row[gmacs])}
    return table


def test_registry_holds_the_published_numbers():
    table = published_table()
    assert sorted(table) == sorted(paddle_dla.list_models())
    for name, published in table.items():
        official = get_weights(name)
        assert (official.top1, official.top5) == published['official'], name
        assert official.metrics_source == TIMM_TABLE
        assert (official.params_m, official.gmacs) == (published['params_m'],
                                                      published['gmacs']), name
        if published['tricks']:  # the Paddle port measured these rows with +tricks weights
            tricks = get_weights(name, 'tricks')
            assert (tricks.top1, tricks.top5) == published['tricks'], name
            assert tricks.metrics_source == PADDLE_PORT_TABLE
    # ...and the registry claims no published figures the table does not hold.
    claimed = {v for (v, t), w in WEIGHTS.items() if t == 'tricks' and w.top1 is not None}
    assert claimed == {name for name, row in table.items() if row['tricks']}


def test_the_repository_copy_of_the_published_table_is_the_reference(tmp_path):
    if not os.path.exists(REFERENCE):
        pytest.skip(f'{REFERENCE} is absent: the copy in {PUBLISHED} is checked alone')
    assert published_table(PUBLISHED) == published_table(REFERENCE)


def test_the_table_reader_reads_what_it_claims(tmp_path):
    """The reader on a small table: each column to its field, a later section ignored."""
    sample = tmp_path / 'REFERENCE.md'
    sample.write_text(f'# facts\n\n{ACCURACY_SECTION} (top-1 / top-5 %)\n\nprose\n\n'
                      '| model | official weights (timm) | Paddle port table | params (M) | '
                      'GMACs |\n|---|---|---|---|---|\n'
                      '| dla_a | 1.5 / 2.25 | 3.0 / 4.0 (+tricks weights) | 5.5 | 6.5 |\n'
                      '| dla_b | 7.125 / 8.0 | 7.13 / 8.01 | 9.0 | 10.0 |\n'
                      '| dla_c | 11.0 / 12.0 | - | 13.25 | 14.0 |\n\n'
                      '## 5. Next\n\n| dla_d | 1.0 / 1.0 | - | 1 | 1 |\n')
    assert published_table(str(sample)) == {
        'dla_a': {'official': (1.5, 2.25), 'tricks': (3.0, 4.0), 'params_m': 5.5, 'gmacs': 6.5},
        'dla_b': {'official': (7.125, 8.0), 'tricks': None, 'params_m': 9.0, 'gmacs': 10.0},
        'dla_c': {'official': (11.0, 12.0), 'tricks': None, 'params_m': 13.25, 'gmacs': 14.0}}


def test_registry_has_every_variant_its_sources_and_preprocessing():
    for name in paddle_dla.list_models():
        weights = get_weights(name)
        assert weights.tag == 'official' and weights.top1 and weights.top5
        assert weights.preprocessing.resize == 256 and weights.preprocessing.img_size == 224
        assert weights.preprocessing.interpolation == 'bilinear' and weights.num_classes == 1000
        hf = (f'https://huggingface.co/timm/{paddle_dla.get_config(name).official_name}.in1k/'
              f'resolve/main/model.safetensors')
        assert hf in [s.url for s in weights.sources]
    assert sorted(t for v, t in WEIGHTS) == ['official'] * 12 + ['tricks'] * 3
    hosts = {urllib.parse.urlsplit(s.url).netloc for w in list_weights() for s in w.sources}
    assert hosts == {'dl.yf.io', 'github.com', 'huggingface.co',
                     'storage.openvinotoolkit.org'}


def test_every_published_file_name_carries_its_hash():
    for weights in list_weights():
        for source in weights.sources:
            if source.filename.endswith('.pth'):
                assert source.filename.endswith(f'-{source.sha256_prefix}.pth')
                assert len(source.sha256_prefix) == 8
                int(source.sha256_prefix, 16)
            else:
                assert source.sha256_prefix is None


@pytest.fixture
def cache(tmp_path, monkeypatch):
    home = tmp_path / 'cache'
    monkeypatch.setenv('PADDLE_DLA_HOME', str(home))
    monkeypatch.setenv('PADDLE_DLA_TIMEOUT', '5')
    for proxy in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY'):
        monkeypatch.delenv(proxy, raising=False)  # the loopback servers are reached directly
    return home


def _publish(server, tmp_path, monkeypatch, variant, layouts=('official',), behaviour=None):
    """Serve oracle weights of ``variant`` and point its registry entry at them."""
    from checkpoint_files import save_official, save_official_legacy, save_safetensors
    sources = []
    for i, layout in enumerate(layouts):
        if layout in ('official', 'legacy'):
            raw = tmp_path / f'raw{i}.pth'
            (save_official_legacy if layout == 'legacy' else save_official)(variant, raw)
            data = raw.read_bytes()
            sha = hashlib.sha256(data).hexdigest()[:8]
            path = f'/dla/models/imagenet/{paddle_dla.get_config(variant).official_name}-{sha}.pth'
        else:
            raw = tmp_path / f'raw{i}.safetensors'
            save_safetensors(variant, raw)
            data, sha = raw.read_bytes(), None
            path = f'/timm/{variant}.in1k/resolve/main/model.safetensors'
        server.files[path] = data
        if behaviour and behaviour.get(i):
            server.behaviour[path] = behaviour[i]
        sources.append({'url': 'https://weights.example.org' + path, 'sha256_prefix': sha})
    override = tmp_path / 'override.json'
    override.write_text(json.dumps({f'{variant}.official': {'sources': sources}}))
    monkeypatch.setenv('PADDLE_DLA_WEIGHTS_OVERRIDE', str(override))
    monkeypatch.setenv('PADDLE_DLA_MIRROR', server.url)
    return [s['url'] for s in sources]


def _cache_files(home):
    return sorted(str(p.relative_to(home)) for p in home.rglob('*')
                  if p.is_file() and '.locks' not in p.parts)


def _assert_matches_oracle(model, variant):
    from oracle import oracle, random_images, reference_logits
    model.eval()
    images = random_images((2, 3, 64, 64))
    reference = reference_logits(oracle(variant), images)
    ours = run_paddle(model, images)
    assert relative_error(ours, reference) <= FLOAT32_LIMIT and top1_agrees(ours, reference)


@pytest.mark.torch
def test_pretrained_true_downloads_verifies_converts_and_caches(cache, tmp_path, monkeypatch):
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c')
        model = paddle_dla.dla_46_c(pretrained=True)
        assert sum(server.requests.values()) == 1
    _assert_matches_oracle(model, 'dla_46_c')
    assert _cache_files(cache) == ['dla_46_c-official.pdparams']
    # The server is gone: the cache answers.
    again = paddle_dla.create_model('dla46_c', pretrained='official')
    _assert_matches_oracle(again, 'dla_46_c')


@pytest.mark.torch
@pytest.mark.full  # the fast tier falls through on a dropped connection (below)
def test_404_falls_through_to_the_safetensors_source(cache, tmp_path, monkeypatch):
    monkeypatch.setenv('PADDLE_DLA_ALLOW_UNVERIFIED', '1')  # the safetensors file has no hash
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_60_res2next', ('official', 'hf'), {0: '404'})
        model = paddle_dla.dla_60_res2next(pretrained=True)
        assert sorted(server.requests.values()) == [1, 1]
    _assert_matches_oracle(model, 'dla_60_res2next')


@pytest.mark.torch
def test_dropped_connection_is_retried_then_falls_through(cache, tmp_path, monkeypatch):
    monkeypatch.setenv('PADDLE_DLA_ALLOW_UNVERIFIED', '1')
    with MirrorServer() as server:
        urls = _publish(server, tmp_path, monkeypatch, 'dla_46x_c', ('official', 'hf'),
                        {0: 'drop'})
        model = paddle_dla.dla_46x_c(pretrained=True)
        first = urllib.parse.urlsplit(urls[0]).path
        assert server.requests[first] == 3  # bounded retries
    _assert_matches_oracle(model, 'dla_46x_c')
    assert _cache_files(cache) == []  # the unverified fallback is used, never cached


@pytest.mark.torch
def test_corrupt_bytes_are_a_sha256_mismatch_and_leave_nothing(cache, tmp_path, monkeypatch):
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c', behaviour={0: 'corrupt'})
        with pytest.raises(PretrainedUnavailable) as err:
            paddle_dla.dla_46_c(pretrained=True)
    message = str(err.value)
    assert 'dla_46_c' in message and "'official'" in message and 'sha256 mismatch' in message
    assert 'paddle-dla convert --src' in message
    assert _cache_files(cache) == []


def test_no_network_fails_fast_with_the_way_out(cache, monkeypatch):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv('PADDLE_DLA_MIRROR', f'http://127.0.0.1:{port}')
    start = time.monotonic()
    with pytest.raises(PretrainedUnavailable) as err:
        paddle_dla.dla_60(pretrained=True)
    assert time.monotonic() - start < 30
    message = str(err.value)
    for source in get_weights('dla_60').sources:
        assert urllib.parse.urlsplit(source.url).path in message
    sources = get_weights('dla_60').sources
    verified = [s for s in sources if s.expected.strength]
    assert message.count('connection refused') == len(verified) == 2
    assert message.count('skipped, no published hash') == len(sources) - len(verified) == 1
    assert f'fetch {sources[0].url}' in message
    assert _cache_files(cache) == []


@pytest.mark.full
@pytest.mark.torch
def test_a_stalled_server_times_out(cache, tmp_path, monkeypatch):
    monkeypatch.setenv('PADDLE_DLA_TIMEOUT', '0.5')
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c', behaviour={0: 'stall'})
        start = time.monotonic()
        with pytest.raises(PretrainedUnavailable, match='timed out after 0.5 s'):
            paddle_dla.dla_46_c(pretrained=True)
        assert time.monotonic() - start < 10
    assert _cache_files(cache) == []


@pytest.mark.torch
def test_other_num_classes_loads_the_backbone_and_warns(cache, tmp_path, monkeypatch):
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c')
        with pytest.warns(UserWarning, match=r'classifier not loaded \(fc.bias, fc.weight\)'):
            model = paddle_dla.dla_46_c(pretrained=True, num_classes=10)
    from checkpoint_files import official_layout
    state = official_layout('dla_46_c')
    np.testing.assert_array_equal(model.level5.root.conv.weight.numpy(),
                                  state['level5.root.conv.weight'].numpy())
    assert model.fc.weight.shape == [10, 256, 1, 1]
    headless = paddle_dla.dla_46_c(pretrained=True, num_classes=0)
    assert headless.get_classifier() is None


CONCURRENT = ("import paddle_dla, sys; m = paddle_dla.dla_46_c(pretrained=True); "
              "print('ok', m.num_classes)")


@pytest.mark.full
@pytest.mark.torch
def test_two_processes_share_one_download(cache, tmp_path, monkeypatch):
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c', behaviour={0: 'slow'})
        procs = [subprocess.Popen([sys.executable, '-c', CONCURRENT], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                                  cwd=REPO) for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert all(out.strip().endswith('ok 1000') for out, _ in outputs)
        assert sum(server.requests.values()) == 1
    assert _cache_files(cache) == ['dla_46_c-official.pdparams']
    _assert_matches_oracle(paddle_dla.dla_46_c(pretrained=True), 'dla_46_c')


NO_TORCH_PRETRAINED = ("import sys; sys.modules['torch'] = None; import paddle_dla\n"
                      "try: paddle_dla.dla_46_c(pretrained=True); print('loaded')\n"
                      "except Exception as e: print(e)")


@pytest.mark.torch  # torch writes the served file; the reading child has none
@pytest.mark.parametrize('legacy', [pytest.param(False, marks=pytest.mark.full), True])
def test_pth_source_without_torch(cache, tmp_path, monkeypatch, legacy):
    """Neither zip-format nor legacy .pth files need torch."""
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c', ('legacy' if legacy else 'official',))
        proc = subprocess.run([sys.executable, '-c', NO_TORCH_PRETRAINED], capture_output=True,
                              text=True, env=dict(os.environ), cwd=REPO, timeout=300)
    assert proc.stdout.strip().endswith('loaded'), proc.stdout + proc.stderr
    assert _cache_files(cache) == ['dla_46_c-official.pdparams']


@pytest.mark.torch
def test_pretrained_path_to_pth_and_safetensors_converts_in_memory(tmp_path):
    from checkpoint_files import save_official, save_safetensors
    save_official('dla_34', tmp_path / 'dla34.pth')
    save_safetensors('dla_34', tmp_path / 'model.safetensors')
    for name in ('dla34.pth', 'model.safetensors'):
        _assert_matches_oracle(paddle_dla.dla_34(pretrained=str(tmp_path / name)), 'dla_34')
    with pytest.raises(ValueError, match="no 'imagenet' weights; tags: official, tricks"):
        paddle_dla.dla_34(pretrained='imagenet')


@pytest.mark.full
@pytest.mark.torch
def test_all_and_list_cache_commands(cache, tmp_path, monkeypatch):
    proc = run_cli('tools/torch2paddle.py', '--list-cache')
    assert proc.returncode == 0 and proc.stdout.count('missing') == len(WEIGHTS)
    with MirrorServer() as server:
        _publish(server, tmp_path, monkeypatch, 'dla_46_c')
        proc = run_cli('tools/torch2paddle.py', '--all', '--model', 'dla_46_c',
                       '--keep-downloads')
    assert proc.returncode == 0, proc.stderr
    assert len(_cache_files(cache)) == 2 and _cache_files(cache)[1].startswith('downloads/dla46_c-')
    assert 'dla_46_c.official: ready' in proc.stdout
    proc = run_cli('tools/torch2paddle.py', '--list-cache')
    digest = hashlib.sha256((cache / 'dla_46_c-official.pdparams').read_bytes()).hexdigest()
    line = next(l for l in proc.stdout.splitlines() if l.startswith('dla_46_c.official'))
    assert 'present' in line and digest in line
    assert proc.stdout.count('missing') == len(WEIGHTS) - 1
