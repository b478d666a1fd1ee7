"""Small files that try to make a reader work or allocate far beyond their size, and the
other corners an attacker reaches for: each is refused quickly, under a memory bound, in
one line naming the file."""
import bz2
import os
import pickle
import struct
import time
import zipfile

import pytest

from paddle_dla.weights.checkpoint import load_pdparams
from paddle_dla.weights.convert import read_checkpoint
from paddle_dla.core.errors import CheckpointReadError
from hostile import assert_refused, run_module, run_python, run_script

# Pickle records, opcode by opcode (pickle.dump would never write these files).
P = pickle


def _global(module, name):
    return P.GLOBAL + f'{module}\n{name}\n'.encode()


def _text(value):
    data = value.encode()
    return P.BINUNICODE + struct.pack('<I', len(data)) + data


def _bytes(value):
    return P.BINBYTES + struct.pack('<I', len(value)) + value


def _int(value):
    return P.BININT + struct.pack('<i', value)


def _put(i):
    return P.LONG_BINPUT + struct.pack('<I', i)


def _get(i):
    return P.LONG_BINGET + struct.pack('<I', i)


def _dict_with(key, record):
    return b'\x80\x02' + P.EMPTY_DICT + _text(key) + record + P.SETITEM + P.STOP


def _laughs(depth):
    """A list whose two items are the same list, ``depth`` times over: 2**depth leaves
    from a few hundred bytes, for any walk that does not remember what it has seen."""
    record = P.EMPTY_LIST + _int(0) + P.APPEND + _put(0) + P.POP
    for i in range(depth):
        record += P.EMPTY_LIST + P.MARK + _get(i) * 2 + P.APPENDS + _put(i + 1) + P.POP
    return record + _get(depth)


def _copies(items, times):
    """``tuple()`` applied ``times`` times to one stored list of ``items`` elements."""
    record = _global('builtins', 'tuple') + _put(0) + P.POP
    record += P.EMPTY_LIST + P.MARK + _int(0) + P.DUP * (items - 1) + P.APPENDS + P.TUPLE1
    record += _put(1) + P.POP + P.EMPTY_LIST
    return record + (_get(0) + _get(1) + P.REDUCE + P.APPEND) * times


def _array(count, order, first):
    """A big-endian float32 array record; all but the first reuse the first's bytes."""
    record = _global('numpy.core.multiarray', '_reconstruct') + _global('numpy', 'ndarray')
    record += _int(0) + P.TUPLE1 + _bytes(b'b') + P.TUPLE3 + P.REDUCE
    record += P.MARK + _int(1) + P.MARK + _int(count) + P.TUPLE
    record += _global('numpy', 'dtype') + _text('f4') + P.NEWFALSE + P.NEWTRUE + P.TUPLE3
    record += P.REDUCE + P.MARK + _int(3) + _text(order) + P.NONE * 3 + _int(-1) + _int(0)
    record += _int(0) + P.TUPLE + P.BUILD + P.NEWFALSE
    record += (_bytes(bytes(4 * count)) + _put(9)) if first else _get(9)
    return record + P.TUPLE + P.BUILD


def _timed_refusal(path, *phrases, reader=None):
    start = time.monotonic()
    with pytest.raises(CheckpointReadError) as err:
        (reader or (load_pdparams if str(path).endswith('.pdparams') else read_checkpoint))(path)
    assert time.monotonic() - start < 20
    message = str(err.value)
    assert str(path) in message and all(p in message for p in phrases), message
    return message


def test_shared_sub_trees_are_walked_once(tmp_path):
    path = tmp_path / 'laughs.pdparams'
    path.write_bytes(_dict_with('w', _laughs(60)))
    assert path.stat().st_size < 1500
    _timed_refusal(path, 'not a named tensor')
    code = ('import sys, paddle_dla\ntry:\n    paddle_dla.create_model("dla_46_c", '
            'pretrained=sys.argv[1])\nexcept paddle_dla.core.errors.PaddleDLAError as e:\n'
            '    print(e, file=sys.stderr); sys.exit(3)')
    proc = run_python(code, path, timeout=120)
    assert_refused(proc, 'laughs.pdparams')


@pytest.mark.parametrize('suffix', ['.pdparams', '.pth'])
def test_one_stored_list_cannot_be_copied_without_bound(tmp_path, suffix):
    path = tmp_path / f'copies{suffix}'
    path.write_bytes(_dict_with('w', _copies(200000, 200)))
    assert path.stat().st_size < 1 << 20
    _timed_refusal(path, 'far more data than the file holds')


def test_one_stored_buffer_cannot_become_many_arrays(tmp_path):
    body = b'\x80\x02' + P.EMPTY_DICT + P.MARK
    for i in range(300):
        body += _text(f'k{i}') + _array(1 << 18, '>', first=i == 0)
    path = tmp_path / 'swap.pdparams'
    path.write_bytes(body + P.SETITEMS + P.STOP)
    _timed_refusal(path, 'far more data than the file holds')


def test_a_byte_order_record_that_numpy_misreads_is_named(tmp_path):
    path = tmp_path / 'order.pdparams'
    path.write_bytes(_dict_with('w', _array(4, '', first=True)))
    _timed_refusal(path, 'unsupported NumPy dtype')


@pytest.mark.parametrize('method', [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_methods_torch_never_writes_are_refused_before_reading(tmp_path, method):
    path = tmp_path / 'packed.pth'
    with zipfile.ZipFile(path, 'w', method) as archive:
        archive.writestr('archive/data.pkl', pickle.dumps({}, protocol=2))
        archive.writestr('archive/byteorder', 'little')
    _timed_refusal(path, 'compressed in a way torch never writes')


@pytest.mark.full
def test_a_bzip2_bomb_is_not_decompressed(tmp_path):
    """1 GiB of zeros in under a kilobyte, declared as a 6-byte member."""
    compressor = bz2.BZ2Compressor(9)
    packed = b''.join(compressor.compress(bytes(64 << 20)) for _ in range(16))
    packed += compressor.flush()
    path = tmp_path / 'bomb.pth'
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_BZIP2) as archive:
        archive.writestr('archive/data.pkl', pickle.dumps({}, protocol=2))
        archive.writestr('archive/byteorder', 'little')
    proc = run_script('tools/torch2paddle.py', '--src', path, '--dst', tmp_path / 'o.pdparams')
    assert_refused(proc, 'bomb.pth', 'compressed in a way torch never writes',
                   absent=[tmp_path / 'o.pdparams'])
    assert len(packed) < 2000  # what such a member would have cost


def test_a_legacy_storage_key_must_be_a_string(tmp_path):
    header = b''.join(pickle.dumps(v, protocol=2) for v in (
        0x1950a86a20f9469cfc6c, 1001, {'protocol_version': 1001, 'little_endian': True,
                                       'type_sizes': {}}))
    record = (P.MARK + _text('storage') + _global('torch', 'FloatStorage') + _laughs(40)
              + _text('cpu') + _int(1) + P.NONE + P.TUPLE + P.BINPERSID)
    path = tmp_path / 'legacy.pth'
    path.write_bytes(header + _dict_with('w', record) + pickle.dumps(['0'], protocol=2)
                     + struct.pack('<q', 1) + bytes(4))
    _timed_refusal(path, 'storage key is not a string')


def test_a_safetensors_header_of_empty_lists_is_refused_cheaply(tmp_path):
    header = b'{"a":[' + b'[],' * 2_000_000 + b'[]]}'
    header += b' ' * (-len(header) % 8)
    path = tmp_path / 'lists.safetensors'
    path.write_bytes(struct.pack('<Q', len(header)) + header)
    _timed_refusal(path, 'more nesting than any tensor table needs')


@pytest.mark.parametrize('shape', [[0, 2 ** 62], [0, 2 ** 70]])
def test_safetensors_shapes_numpy_cannot_make_are_named(tmp_path, shape):
    import json
    header = json.dumps({'a': {'dtype': 'F32', 'shape': shape, 'data_offsets': [0, 0]}})
    header = header.encode() + b' ' * (-len(header) % 8)
    path = tmp_path / 'shape.safetensors'
    path.write_bytes(struct.pack('<Q', len(header)) + header)
    _timed_refusal(path)


def test_an_icon_named_jpg_is_not_decoded_while_opening(tmp_path):
    """Pillow decodes an icon's embedded PNG when it opens the file: only formats that
    read a header first are opened at all."""
    from PIL import Image
    from paddle_dla.evaluation.transforms import ImageReadError, Preprocess
    path = tmp_path / 'icon.jpg'
    Image.new('RGB', (64, 64)).save(path, format='ICO')
    with pytest.raises(ImageReadError, match='icon.jpg'):
        Preprocess()(str(path))


@pytest.mark.full
def test_predict_refuses_a_fifo_instead_of_hanging(tmp_path):
    fifo = tmp_path / 'photo.jpg'
    os.mkfifo(fifo)
    weights = tmp_path / 'w.pdparams'
    code = ('import sys, paddle_dla\nfrom paddle_dla.weights.checkpoint import save_pdparams\n'
            'save_pdparams(paddle_dla.dla_46_c().state_dict(), sys.argv[1])')
    assert run_python(code, weights).returncode == 0
    proc = run_module('predict', fifo, '--model', 'dla_46_c', '--weights', weights, timeout=120)
    assert_refused(proc, 'photo.jpg', 'not a regular file')


@pytest.mark.parametrize('value', [
    pytest.param(value, marks=() if value == '-1' else pytest.mark.full)
    for value in ('-1', '0', 'inf', 'soon')])
def test_the_lock_wait_cannot_be_made_unbounded(tmp_path, value):
    code = ('import paddle_dla\ntry:\n    paddle_dla.dla_46_c(pretrained=True)\n'
            'except paddle_dla.core.errors.PaddleDLAError as e:\n    print(e)')
    proc = run_python(code, env={'PADDLE_DLA_HOME': str(tmp_path),
                                 'PADDLE_DLA_LOCK_TIMEOUT': value}, timeout=120)
    assert 'PADDLE_DLA_LOCK_TIMEOUT must be a positive number of seconds' in proc.stdout


SIGTERM_WHILE_WRITING = """
import os, signal, sys, time
from paddle_dla.core.atomic import atomic_output
from paddle_dla.weights import checkpoint
from paddle_dla.cli import convert

def save_then_terminated(state, path):  # SIGTERM arrives halfway through the write
    with atomic_output(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(bytes(1 << 20))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)

checkpoint.save_pdparams = save_then_terminated
sys.exit(convert.main(sys.argv[1:]))
"""


@pytest.mark.full
@pytest.mark.torch
def test_a_converter_interrupted_by_sigterm_says_so_in_one_line(tmp_path):
    """SIGTERM while the output is written: one line, exit 143, no partial or temporary
    file (the signal is sent from inside the write, so the timing is exact)."""
    from checkpoint_files import save_timm
    src, dst = tmp_path / 'w.pth', tmp_path / 'out' / 'w.pdparams'
    save_timm('dla_46_c', src)
    proc = run_python(SIGTERM_WHILE_WRITING, '--src', src, '--dst', dst, timeout=120)
    assert proc.returncode == 143 and 'Traceback' not in proc.stderr, proc.stderr
    assert [l for l in proc.stderr.splitlines() if l.strip()] == [
        'torch2paddle: error: terminated by signal 15']
    assert not dst.exists() and os.listdir(dst.parent) == []


SIGNAL_WHILE_CONVERTING = """
import os, signal, sys
import paddle_dla.models.dla as dla
from paddle_dla.cli import main
traced = dla.DLA.forward_features

def signalled(self, x):  # runs while Paddle converts the model to a static program
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return traced(self, x)

dla.DLA.forward_features = signalled
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.full
@pytest.mark.parametrize('signal_name, status, line', [
    ('SIGINT', 130, 'interrupted'), ('SIGTERM', 143, 'terminated by signal 15')])
def test_an_export_interrupted_while_paddle_converts_it_says_so_in_one_short_line(
        tmp_path, signal_name, status, line):
    """Paddle's static conversion re-raises the interruption with its traceback as the
    message (kilobytes on one line): the user gets the one line that matters."""
    import paddle_dla
    from paddle_dla.weights.checkpoint import save_pdparams
    weights = tmp_path / 'w.pdparams'
    save_pdparams(paddle_dla.create_model('dla_46_c').state_dict(), weights)
    out = tmp_path / 'out'
    proc = run_python(SIGNAL_WHILE_CONVERTING, signal_name, 'export', '--model', 'dla_46_c',
                      '--weights', weights, '--out', out, timeout=300,
                      env={'PADDLE_DLA_HOME': str(tmp_path / 'home')})
    assert proc.returncode == status, proc.stderr
    assert [l for l in proc.stderr.splitlines() if l.strip()] == [
        f'paddle-dla export: error: {line}']
    assert not out.exists() or os.listdir(out) == []


def test_a_server_announcing_more_than_the_cap_is_refused_before_reading(tmp_path,
                                                                       monkeypatch):
    import paddle_dla
    from paddle_dla.weights.download import DownloadError, download
    from mirror_server import MirrorServer
    monkeypatch.setattr(paddle_dla.weights.download, 'MAX_UNKNOWN_SIZE', 1000)
    with MirrorServer() as server:
        server.files['/big.pth'] = bytes(5000)
        with pytest.raises(DownloadError, match='announces 5,000 bytes, more than the 1,000'):
            download(server.url + '/big.pth', tmp_path / 'big.pth')
    assert os.listdir(tmp_path) == []
