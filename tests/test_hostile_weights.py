"""Hostile and broken weights files against every reader and the converters: nothing
executes, memory stays bounded, the refusal is one line naming the file, nothing is left."""
import ast
import collections
import json
import os
import pickle
import signal
import struct
import zipfile

import numpy as np
import pytest

import paddle_dla
from paddle_dla.weights.checkpoint import load_pdparams, save_pdparams
from paddle_dla.weights.convert import read_checkpoint
from paddle_dla.core.errors import CheckpointReadError
from hostile import (MEMORY_LIMIT, REPO, OpenPayload, Payload, assert_refused, hostile_pdparams,
                     leftovers, run_python, run_script)
# torch's zip format, written without torch
from torch_files import Storage, View, official_layout, save_state_dict, torch_zip

TORCH2PADDLE, PADDLE2TORCH = 'tools/torch2paddle.py', 'tools/paddle2torch.py'


def _read_refused(path, *phrases):
    with pytest.raises(CheckpointReadError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert str(path) in message, message
    for phrase in phrases:
        assert phrase in message, message
    return message


@pytest.mark.torch
def test_a_crafted_file_reads_back_exactly(tmp_path):
    """The crafting helper writes what torch and the reader understand (so refusals below
    are for the reason given, not a malformed helper file)."""
    import torch
    data = np.arange(12, dtype=np.float32)
    storage = Storage(data.tobytes())
    path = torch_zip(tmp_path / 'ok.pth', {'a': View(storage, 2, (2, 3), (3, 1)),
                                          'b': View(storage, 0, (4,), (3,))}, [storage])
    out = read_checkpoint(path)
    np.testing.assert_array_equal(out['a'], data[2:8].reshape(2, 3))
    np.testing.assert_array_equal(out['b'], data[0:12:3])
    assert torch.load(path, weights_only=True)['a'].tolist() == out['a'].tolist()
    state = official_layout('dla_46_c')
    save_state_dict(state, tmp_path / 'state.pth')
    theirs = torch.load(tmp_path / 'state.pth', weights_only=True)
    ours = read_checkpoint(tmp_path / 'state.pth')
    assert list(theirs) == list(ours) == list(state)
    for key, value in state.items():
        assert theirs[key].numpy().dtype == value.dtype, key
        assert np.array_equal(theirs[key].numpy(), value), key


@pytest.mark.parametrize('size, stride, offset, phrase', [
    ((4,), (-1,), 3, 'corrupt tensor shape'),                      # negative stride
    ((4,), (1,), -2, 'corrupt tensor record'),                     # negative offset
    ((5,), (3,), 0, 'runs past its storage'),                      # past the end
    ((2 ** 62, 2 ** 62), (1, 1), 0, 'runs past its storage'),      # overflowing products
    ((2, -3), (1, 1), 0, 'corrupt tensor shape'),                  # negative size
])
def test_tensor_views_are_bounded_for_every_stride(tmp_path, size, stride, offset, phrase):
    storage = Storage(np.arange(12, dtype=np.float32).tobytes())
    path = torch_zip(tmp_path / 'view.pth', {'w': View(storage, offset, size, stride)}, [storage])
    _read_refused(path, phrase)


def test_a_stride_zero_view_cannot_blow_up_memory(tmp_path):
    """Four bytes viewed as 3 GB: refused by the cap on what a file may make us allocate,
    and the command stays under its memory bound."""
    storage = Storage(np.float32(1).tobytes())
    path = torch_zip(tmp_path / 'bomb.pth', {'fc.weight': View(storage, 0, (30000, 25000),
                                                               (0, 0))}, [storage])
    assert path.stat().st_size < 2000
    _read_refused(path, 'far more memory than the data the file holds')
    dst = tmp_path / 'out.pdparams'
    proc = run_script(TORCH2PADDLE, '--src', path, '--dst', dst)
    assert_refused(proc, 'bomb.pth', 'far more memory', absent=[dst])
    assert leftovers(tmp_path) == [str(path)]


@pytest.mark.full
def test_a_compressed_member_cannot_expand_without_bound(tmp_path):
    """A 1.5 GB run of zeros deflates to about 1.5 MB; referenced four times it used to be
    decompressed four times. Now the expansion is refused before anything is read."""
    zeros = bytes(1 << 30)
    storage = Storage(zeros)
    views = {f'w{i}': View(storage, 0, (len(zeros) // 4,), (1,)) for i in range(4)}
    path = torch_zip(tmp_path / 'zipbomb.pth', views, [storage], compress=True)
    del zeros
    assert path.stat().st_size < 3 << 20
    proc = run_script(TORCH2PADDLE, '--src', path, '--dst', tmp_path / 'out.pdparams')
    assert_refused(proc, 'zipbomb.pth', 'would expand to', absent=[tmp_path / 'out.pdparams'])


def test_each_zip_member_is_read_once(tmp_path, monkeypatch):
    storage = Storage(np.arange(1000, dtype=np.float32).tobytes())
    views = {f'w{i}': View(storage, 0, (1000,), (1,)) for i in range(4)}
    path = torch_zip(tmp_path / 'shared.pth', views, [storage])
    opened = collections.Counter()
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened[getattr(name, 'filename', name)] += 1
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, 'open', counting_open)
    out = read_checkpoint(path)
    assert len(out) == 4 and opened['archive/data/0'] == 1


@pytest.mark.full
def test_a_self_referencing_wrapper_is_refused_not_looped(tmp_path):
    loop = {}
    loop['state_dict'] = loop
    path = torch_zip(tmp_path / 'loop.pth', loop, [])
    _read_refused(path, 'refers to itself')
    proc = run_script(TORCH2PADDLE, '--src', path, '--dst', tmp_path / 'o.pdparams', timeout=60)
    assert_refused(proc, 'loop.pth', 'refers to itself', absent=[tmp_path / 'o.pdparams'])


@pytest.mark.full
def test_deep_nesting_is_a_clean_refusal(tmp_path):
    depth = 100000  # lists in lists, written opcode by opcode (pickle.dump would recurse)
    path = tmp_path / 'deep.pth'
    path.write_bytes(b'\x80\x02' + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)
                     + pickle.STOP)
    proc = run_script(TORCH2PADDLE, '--src', path, '--dst', tmp_path / 'o.pdparams', timeout=60)
    assert_refused(proc, 'deep.pth', 'not a state dict', absent=[tmp_path / 'o.pdparams'])


def _pth_cases():
    """Each container with each payload; one case in the fast tier (written without torch)."""
    for container in ('zip', 'legacy', 'bare'):
        for payload in (Payload, OpenPayload):
            marks = [pytest.mark.torch] if container != 'bare' else []
            if (container, payload) != ('bare', Payload):
                marks.append(pytest.mark.full)
            yield pytest.param(container, payload, marks=marks,
                               id=f'{payload.__name__}-{container}')


@pytest.mark.parametrize('container, payload', list(_pth_cases()))
def test_code_in_a_pth_never_runs(tmp_path, container, payload):
    marker = tmp_path / 'pwned'
    src, dst = tmp_path / 'evil.pth', tmp_path / 'out.pdparams'
    if container == 'bare':
        state = {'state_dict': {'fc.weight': np.zeros(1, np.float32)}, 'trap': payload(marker)}
        src.write_bytes(pickle.dumps(state, protocol=2))
    else:
        import torch
        state = {'state_dict': {'fc.weight': torch.zeros(1)}, 'trap': payload(marker)}
        torch.save(state, src, _use_new_zipfile_serialization=container == 'zip')
    assert not marker.exists()
    proc = run_script(TORCH2PADDLE, '--src', src, '--dst', dst)
    assert_refused(proc, 'evil.pth', 'could run code', absent=[dst, marker])
    function = payload(marker).__reduce__()[0]
    assert f'{function.__module__}.{function.__name__}' in proc.stderr


@pytest.mark.full
@pytest.mark.torch
def test_non_string_keys_and_control_characters_are_named_safely(tmp_path):
    import torch
    from oracle import oracle_state_dict
    path = tmp_path / 'intkeys.pth'
    torch.save({1: torch.zeros(2), 'fc.weight': torch.zeros(2)}, path)
    proc = run_script(TORCH2PADDLE, '--src', path, '--dst', tmp_path / 'o.pdparams')
    assert_refused(proc, 'intkeys.pth', 'key of type int')
    state = dict(oracle_state_dict('dla_46_c'))
    state['fc.weight\x1b[31m\x07'] = state.pop('fc.weight')
    path = tmp_path / 'escape.pth'
    torch.save(state, path)
    proc = run_script(TORCH2PADDLE, '--src', path, '--model', 'dla_46_c', '--dst',
                      tmp_path / 'o.pdparams')
    line = assert_refused(proc, 'escape.pth', 'fc.weight\\x1b[31m\\x07')
    assert '\x1b' not in proc.stderr and '\x07' not in proc.stderr, line


@pytest.mark.full
@pytest.mark.torch
def test_integer_tensors_where_parameters_belong_are_refused_by_name(tmp_path):
    import torch
    from oracle import oracle_state_dict
    state = dict(oracle_state_dict('dla_46_c'))
    state['fc.bias'] = state['fc.bias'].to(torch.int64)
    state['base_layer.1.weight'] = state['base_layer.1.weight'] > 0
    path = tmp_path / 'ints.pth'
    torch.save(state, path)
    dst = tmp_path / 'o.pdparams'
    proc = run_script(TORCH2PADDLE, '--src', path, '--model', 'dla_46_c', '--dst', dst)
    assert_refused(proc, 'fc.bias (int64)', 'base_layer.1.weight (bool)', absent=[dst])


@pytest.mark.torch
@pytest.mark.full
@pytest.mark.parametrize('dtype', ['float16', 'bfloat16', 'float64'])
def test_other_float_types_become_float32(tmp_path, dtype):
    import torch
    from oracle import oracle_state_dict
    dtype = getattr(torch, dtype)
    state = {k: (v.to(dtype) if v.is_floating_point() else v)
             for k, v in oracle_state_dict('dla_46_c').items()}
    src, dst = tmp_path / 'half.pth', tmp_path / 'o.pdparams'
    torch.save(state, src)
    proc = run_script(TORCH2PADDLE, '--src', src, '--dst', dst)
    assert proc.returncode == 0, proc.stderr
    out = load_pdparams(dst)
    assert {v.dtype for v in out.values()} == {np.dtype('float32')}
    np.testing.assert_array_equal(out['fc.weight'], state['fc.weight'].float().numpy())


# ---------------------------------------------------------------------------------------------
# Safetensors, by the reference library's rules.

def _safetensors(path, header, body):
    raw = json.dumps(header).encode() if isinstance(header, dict) else header
    path.write_bytes(struct.pack('<Q', len(raw)) + raw + body)
    return path


F32 = {'dtype': 'F32', 'shape': [2]}


@pytest.mark.parametrize('header, body, phrase', [
    ({'a': {**F32, 'data_offsets': [0, 8]}, 'b': {**F32, 'data_offsets': [4, 12]}},
     bytes(12), 'overlaps'),
    ({'a': {**F32, 'data_offsets': [0, 8]}, 'b': {**F32, 'data_offsets': [12, 20]}},
     bytes(20), 'gap'),
    ({'a': {**F32, 'data_offsets': [0, 8]}}, bytes(16), 'holds 16'),
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
     b'"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', bytes(8), 'duplicate'),
    ({'a': {'dtype': 'F32', 'shape': [2 ** 40, 2 ** 40], 'data_offsets': [0, 8]}}, bytes(8),
     'has shape'),
    ({'a': {'dtype': 'F32', 'shape': [-2], 'data_offsets': [0, 8]}}, bytes(8), 'corrupt entry'),
    (b'[' * 100000 + b']' * 100000, b'', 'corrupt safetensors header'),
    ({'a': {'dtype': 'OBJ', 'shape': [2], 'data_offsets': [0, 8]}}, bytes(8), 'corrupt entry'),
])
def test_safetensors_rules(tmp_path, header, body, phrase):
    path = _safetensors(tmp_path / 'bad.safetensors', header, body)
    _read_refused(path, phrase)


def test_safetensors_library_files_still_read(tmp_path):
    from safetensors.numpy import save_file
    arrays = {'b': np.ones((2, 3), np.float32), 'a': np.arange(4, dtype=np.int64)}
    save_file(arrays, str(tmp_path / 'ok.safetensors'), metadata={'format': 'pt'})
    out = read_checkpoint(tmp_path / 'ok.safetensors')
    assert all(np.array_equal(out[k], arrays[k]) for k in arrays)


# ---------------------------------------------------------------------------------------------
# .pdparams: every entry point of the runtime reads them without running code.

@pytest.mark.paddle_compat
def test_pdparams_written_by_paddle_read_safely_and_exactly(tmp_path):
    import paddle
    model = paddle_dla.dla_46_c()
    for protocol in (2, 3, 4):
        path = tmp_path / f'p{protocol}.pdparams'
        paddle.save(model.state_dict(), str(path), protocol=protocol)
        ours, theirs = load_pdparams(path), paddle.load(str(path), return_numpy=True)
        assert sorted(ours) == sorted(theirs)
        assert all(np.array_equal(ours[k], theirs[k]) and ours[k].dtype == theirs[k].dtype
                   for k in theirs)
    net = paddle.nn.Linear(2, 3)
    hapi = paddle.Model(net)
    hapi.prepare(paddle.optimizer.Adam(parameters=hapi.parameters()), paddle.nn.MSELoss())
    hapi.train_batch([paddle.randn([4, 2])], [paddle.randn([4, 3])])
    hapi.save(str(tmp_path / 'hapi'))  # paddle.Model.save, as Paddle's tutorials do
    assert sorted(load_pdparams(tmp_path / 'hapi.pdparams')) == ['bias', 'weight']
    optimizer_state = paddle_dla.weights.checkpoint.read_paddle_pickle(tmp_path / 'hapi.pdopt')
    assert any(k.endswith('moment1_0') for k in optimizer_state)


@pytest.mark.paddle_compat
def test_pdparams_split_tensors_are_joined(tmp_path):
    """paddle.save splits tensors over 1 GiB into slices under pickle protocols 2 and 3;
    the table of slices is rebuilt here at a small scale, with Paddle's own key names."""
    whole = np.arange(10, dtype=np.float32).reshape(2, 5)
    state = {'w@@.0': whole.reshape(-1)[:6], 'w@@.1': whole.reshape(-1)[6:],
             'UnpackBigParamInfor@@': {'w': {'OriginShape': (2, 5),
                                             'slices': ['w@@.0', 'w@@.1']}},
             'StructuredToParameterName@@': {'w': 'linear_0.w_0'}}
    path = tmp_path / 'split.pdparams'
    path.write_bytes(pickle.dumps(state, protocol=2))
    out = load_pdparams(path)
    assert list(out) == ['w'] and np.array_equal(out['w'], whole)
    import paddle
    assert np.array_equal(paddle.load(str(path), return_numpy=True)['w'], whole)


@pytest.mark.paddle_compat
@pytest.mark.parametrize('protocol', [pytest.param(2, marks=pytest.mark.full), 4])
def test_code_in_a_pdparams_never_runs_through_the_api(tmp_path, protocol):
    marker = tmp_path / 'pwned'
    path = hostile_pdparams(tmp_path / 'evil.pdparams', marker, protocol)
    code = ('import sys, paddle_dla\ntry:\n    paddle_dla.create_model("dla_46_c", '
            'pretrained=sys.argv[1])\nexcept paddle_dla.core.errors.PaddleDLAError as e:\n'
            '    print(e, file=sys.stderr); sys.exit(3)')
    proc = run_python(code, path)
    assert proc.returncode == 3
    assert_refused(proc, 'evil.pdparams', 'posix.system', 'could run code', absent=[marker])


@pytest.mark.full
def test_a_planted_cache_file_never_runs(tmp_path):
    """A .pdparams planted in $PADDLE_DLA_HOME is read by every pretrained=True."""
    marker = tmp_path / 'pwned'
    home = tmp_path / 'home'
    home.mkdir()
    hostile_pdparams(home / 'dla_46_c-official.pdparams', marker)
    code = ('import sys, paddle_dla\ntry:\n    paddle_dla.dla_46_c(pretrained=True)\n'
            'except paddle_dla.core.errors.PaddleDLAError as e:\n'
            '    print(e, file=sys.stderr); sys.exit(3)')
    proc = run_python(code, env={'PADDLE_DLA_HOME': str(home)})
    assert proc.returncode == 3
    assert_refused(proc, 'dla_46_c-official.pdparams', 'could run code', absent=[marker])


@pytest.mark.full
@pytest.mark.paddle_compat
def test_code_in_a_pdparams_never_runs_in_paddle2torch(tmp_path):
    marker = tmp_path / 'pwned'
    path = hostile_pdparams(tmp_path / 'evil.pdparams', marker)
    dst = tmp_path / 'out.pth'
    proc = run_script(PADDLE2TORCH, '--src', path, '--dst', dst)
    assert_refused(proc, 'paddle2torch: error:', 'evil.pdparams', 'could run code',
                   absent=[dst, marker])


@pytest.mark.paddle_compat
def test_object_arrays_in_a_pdparams_are_refused(tmp_path):
    path = tmp_path / 'objects.pdparams'
    path.write_bytes(pickle.dumps({'w': np.array([1, 'a', None], dtype=object)}, protocol=4))
    with pytest.raises(CheckpointReadError, match="objects.pdparams: refused NumPy dtype 'O8'"):
        load_pdparams(path)


def _unsafe_calls(source):
    """``(line, call)`` of each pickle.load(s), pickle.Unpickler, paddle.load, and torch.load
    without ``weights_only=True`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ''
        call = f'{owner}.{node.func.attr}'
        safe = any(k.arg == 'weights_only' and getattr(k.value, 'value', None) is True
                   for k in node.keywords)
        if call in ('pickle.load', 'pickle.loads', 'pickle.Unpickler',
                    'paddle.load') or (call == 'torch.load' and not safe):
            found.append((node.lineno, call))
    return found


def test_the_unpickling_scan_finds_what_it_looks_for():
    source = ('import pickle, paddle, torch\npickle.loads(b)\npaddle.load(p)\n'
              'torch.load(f)\ntorch.load(f, weights_only=True)\npickle.Unpickler(f).load()\n')
    assert _unsafe_calls(source) == [(2, 'pickle.loads'), (3, 'paddle.load'),
                                     (4, 'torch.load'), (6, 'pickle.Unpickler')]


def test_no_runtime_module_unpickles_unsafely():
    """Nothing in the package calls pickle.load(s), paddle.load or torch.load (without
    weights_only), or builds a pickle.Unpickler, outside the safe reader."""
    found, scanned = [], []
    package = os.path.join(REPO, 'paddle_dla')
    scripts = [os.path.join(REPO, d) for d in ('tools', 'examples')]
    for folder in [package] + scripts:
        for root, _, files in os.walk(folder):
            for name in files:
                if not name.endswith('.py') or name == 'safe_pickle.py':
                    continue
                path = os.path.join(root, name)
                scanned.append(os.path.relpath(path, REPO))
                with open(path, encoding='utf-8') as f:
                    found += [f'{scanned[-1]}:{line} {call}'
                              for line, call in _unsafe_calls(f.read())]
    # Every folder was there to scan (a moved folder would make this pass on nothing).
    assert {p.split(os.sep)[0] for p in scanned} == {'paddle_dla', 'tools', 'examples'}
    assert len(scanned) > 20
    assert found == []


# ---------------------------------------------------------------------------------------------
# Outputs.

@pytest.mark.torch
@pytest.mark.full  # the fast tier checks outputs with the umask test below
@pytest.mark.parametrize('how', ['same', 'spelling', 'symlink', 'hardlink'])
def test_the_destination_may_not_be_the_source(tmp_path, how):
    from checkpoint_files import save_timm
    src = tmp_path / 'w.pth'
    save_timm('dla_46_c', src)
    before = src.read_bytes()
    dst = {'same': src, 'spelling': tmp_path / '.' / 'sub' / '..' / 'w.pth',
           'symlink': tmp_path / 'link.pth', 'hardlink': tmp_path / 'hard.pth'}[how]
    (tmp_path / 'sub').mkdir()
    if how == 'symlink':
        dst.symlink_to(src)
    if how == 'hardlink':
        os.link(src, dst)
    proc = run_script(TORCH2PADDLE, '--src', src, '--dst', dst)
    assert_refused(proc, 'is the source file itself')
    assert src.read_bytes() == before
    pdparams = tmp_path / 'w.pdparams'
    save_pdparams(paddle_dla.dla_46_c().state_dict(), pdparams)
    before = pdparams.read_bytes()
    proc = run_script(PADDLE2TORCH, '--src', pdparams, '--dst', pdparams)
    assert_refused(proc, 'is the source file itself')
    assert pdparams.read_bytes() == before


@pytest.mark.parametrize('umask, mode', [pytest.param(0o022, 0o644, marks=pytest.mark.full),
                                         (0o077, 0o600)])
def test_outputs_get_the_umask_permissions(tmp_path, umask, mode):
    src, dst = tmp_path / 'w.pth', tmp_path / 'out.pdparams'
    save_state_dict(official_layout('dla_46_c', dead_keys=False), src)
    old = os.umask(umask)
    try:
        proc = run_script(TORCH2PADDLE, '--src', src, '--dst', dst)
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert dst.stat().st_mode & 0o777 == mode


SIGTERM_MIDWAY = '''
import os, signal, sys
from paddle_dla.core.atomic import atomic_output
from paddle_dla.core.errors import exit_cleanly_on_sigterm
exit_cleanly_on_sigterm()
with atomic_output(sys.argv[1]) as tmp:
    with open(tmp, 'wb') as f:
        f.write(b'x' * 1000000)
    os.kill(os.getpid(), signal.SIGTERM)
    f = None
'''


def test_sigterm_midway_leaves_no_temporary_file(tmp_path):
    target = tmp_path / 'out.pdparams'
    proc = run_python(SIGTERM_MIDWAY, target)
    assert proc.returncode != 0 and proc.returncode != -signal.SIGTERM
    assert leftovers(tmp_path) == []


def test_the_memory_bound_is_real(tmp_path):
    """The bound the tests run under does stop a process that allocates gigabytes."""
    proc = run_python('import numpy; numpy.ones(%d, "uint8")' % MEMORY_LIMIT)
    assert proc.returncode != 0 and 'MemoryError' in proc.stderr


def test_a_local_file_counts_as_published_only_at_the_strength_the_registry_knows(
        tmp_path, monkeypatch):
    """A file whose sha256 prefix collides with a published name (the prefix is injected
    into the registry: finding a real collision takes minutes) is not the published file
    where the full SHA-384 is known; where only the prefix is known, the prefix decides."""
    import dataclasses
    from paddle_dla.weights import registry as weights_module
    from paddle_dla.weights.convert.identify import HashMismatch
    from paddle_dla.weights.convert.pipeline import convert_checkpoint
    from paddle_dla.core.digests import file_digests
    from paddle_dla.weights.registry import WEIGHTS

    staging = tmp_path / 'staging.pth'
    save_state_dict(official_layout('dla_34', dead_keys=False), staging)
    prefix = file_digests(staging).sha256[:8]
    official = WEIGHTS[('dla_34', 'official')]
    published = next(s for s in official.sources if s.sha384)
    forged = dataclasses.replace(published, url=f'https://example.org/dla34-{prefix}.pth',
                                 sha256_prefix=prefix)
    monkeypatch.setattr(weights_module, 'WEIGHTS', {('dla_34', 'official'): dataclasses.replace(
        official, sources=(forged,))})
    named = tmp_path / f'dla34-{prefix}.pth'
    os.replace(staging, named)
    with pytest.raises(HashMismatch, match='whose full SHA-384 is known, but its content'):
        convert_checkpoint(named)
    renamed = tmp_path / 'mine.pth'
    os.replace(named, renamed)
    conversion = convert_checkpoint(renamed)
    assert not conversion.is_published and conversion.describe_source() == \
        'unpublished checkpoint'
    prefix_only = dataclasses.replace(forged, sha384=None, size=None)
    monkeypatch.setattr(weights_module, 'WEIGHTS', {('dla_34', 'official'): dataclasses.replace(
        official, sources=(prefix_only,), cache_bar=None)})
    conversion = convert_checkpoint(renamed)
    assert conversion.is_published and conversion.identified_by == 'sha256 prefix'
    assert 'matches its 32-bit name hash' in conversion.describe_source()
    assert conversion.cacheable  # the prefix is all this registry knows of the file


@pytest.mark.full
@pytest.mark.paddle_compat
def test_pdparams_that_paddle_split_are_read_whole(tmp_path):
    """paddle.save (protocols 2 and 3) splits a tensor over 1 GiB into slices; a real one is
    read back whole, in a child whose memory is bounded to a few times the file."""
    import paddle
    values = np.arange((1 << 30) + 8, dtype=np.int64).astype(np.uint8)
    path = tmp_path / 'big.pdparams'
    paddle.save({'big': paddle.to_tensor(values), 'small': paddle.ones([3])}, str(path),
                protocol=3)
    del values
    check = ('import sys, numpy as np\nfrom paddle_dla.weights.checkpoint import load_pdparams\n'
             'state = load_pdparams(sys.argv[1])\nbig = state["big"]\n'
             'assert sorted(state) == ["big", "small"] and big.shape == ((1 << 30) + 8,)\n'
             'assert (big[-8:] == np.arange(8)).all() and big[255] == 255\nprint("whole")')
    proc = run_python(check, path, memory=MEMORY_LIMIT + (4 << 30))
    assert proc.stdout.strip() == 'whole', proc.stderr
