"""convert/torch2paddle.py as a user runs it: bad input gives one line, an exit code, no file."""
import torch

from helpers import run_cli, stderr_lines
from oracle import oracle_state_dict


def _assert_clean_failure(proc, dst, *phrases):
    assert proc.returncode != 0
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('torch2paddle: error:')
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert 'Traceback' not in proc.stderr
    assert not dst.exists()
    assert not any(p.name.startswith('.' + dst.name) for p in dst.parent.iterdir())


def test_missing_source(tmp_path):
    dst = tmp_path / 'out.pdparams'
    proc = run_cli('convert/torch2paddle.py', '--src', tmp_path / 'absent.pth', '--model',
                   'dla_34', '--dst', dst)
    _assert_clean_failure(proc, dst, 'no such checkpoint', 'absent.pth')


def test_unknown_model(tmp_path):
    src, dst = tmp_path / 'dla34.pth', tmp_path / 'out.pdparams'
    torch.save(oracle_state_dict('dla_34'), src)
    proc = run_cli('convert/torch2paddle.py', '--src', src, '--model', 'dla_35', '--dst', dst)
    _assert_clean_failure(proc, dst, "unknown DLA variant 'dla_35'")


def test_wrong_model_names_the_keys(tmp_path):
    src, dst = tmp_path / 'dla34.pth', tmp_path / 'out.pdparams'
    torch.save(oracle_state_dict('dla_34'), src)
    proc = run_cli('convert/torch2paddle.py', '--src', src, '--model', 'dla_46_c', '--dst', dst)
    _assert_clean_failure(proc, dst, 'does not match dla_46_c', 'mis-shaped keys')


def test_not_a_checkpoint(tmp_path):
    src, dst = tmp_path / 'junk.pth', tmp_path / 'out.pdparams'
    src.write_bytes(b'\x00' * 100)
    proc = run_cli('convert/torch2paddle.py', '--src', src, '--model', 'dla_34', '--dst', dst)
    _assert_clean_failure(proc, dst, 'not a readable PyTorch checkpoint')


def test_help_shows_examples():
    proc = run_cli('convert/torch2paddle.py', '--help')
    assert proc.returncode == 0 and 'examples:' in proc.stdout and '--model' in proc.stdout
