"""tools/torch2paddle.py as a user runs it: bad input gives one line, an exit code, no file."""
import pickle
import re
import subprocess
import sys

import pytest

from helpers import FLOAT32_LIMIT, child_env, run_cli, stderr_lines


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
    proc = run_cli('tools/torch2paddle.py', '--src', tmp_path / 'absent.pth', '--model',
                   'dla_34', '--dst', dst)
    _assert_clean_failure(proc, dst, 'no such checkpoint', 'absent.pth')


@pytest.mark.full
@pytest.mark.torch
def test_unknown_model(tmp_path):
    import torch
    from oracle import oracle_state_dict
    src, dst = tmp_path / 'dla34.pth', tmp_path / 'out.pdparams'
    torch.save(oracle_state_dict('dla_34'), src)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--model', 'dla_35', '--dst', dst)
    _assert_clean_failure(proc, dst, "unknown model 'dla_35'")


@pytest.mark.full
@pytest.mark.torch
def test_wrong_model_says_which_it_is(tmp_path):
    import torch
    from oracle import oracle_state_dict
    src, dst = tmp_path / 'dla34.pth', tmp_path / 'out.pdparams'
    torch.save(oracle_state_dict('dla_34'), src)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--model', 'dla_46_c', '--dst', dst)
    _assert_clean_failure(proc, dst, 'is a dla_34 checkpoint, not dla_46_c')


@pytest.mark.full
def test_not_a_checkpoint(tmp_path):
    src, dst = tmp_path / 'junk.pth', tmp_path / 'out.pdparams'
    src.write_bytes(b'\x00' * 100)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--model', 'dla_34', '--dst', dst)
    _assert_clean_failure(proc, dst, 'not a readable PyTorch checkpoint')


@pytest.mark.full
@pytest.mark.torch
def test_checkpoint_with_an_extra_key_is_refused_naming_it(tmp_path):
    import torch
    from oracle import oracle_state_dict
    src, dst = tmp_path / 'odd.pth', tmp_path / 'out.pdparams'
    state = dict(oracle_state_dict('dla_34'), **{'level2.extra.weight': torch.zeros(3)})
    torch.save(state, src)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--model', 'dla_34', '--dst', dst)
    _assert_clean_failure(proc, dst, 'unexpected keys [level2.extra.weight]')


@pytest.mark.full
@pytest.mark.torch
def test_partial_dead_keys_are_not_silently_dropped(tmp_path):
    import torch
    from checkpoint_files import official_layout
    src, dst = tmp_path / 'partial.pth', tmp_path / 'out.pdparams'
    state = official_layout('dla_60')
    del state['level4.tree1.project.0.weight']
    torch.save(state, src)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--model', 'dla_60', '--dst', dst)
    _assert_clean_failure(proc, dst, 'unexpected keys', 'level3.project.0.weight')


@pytest.mark.full
def test_folder_without_checkpoints(tmp_path):
    (tmp_path / 'notes.txt').write_text('no weights here')
    dst = tmp_path / 'out'
    proc = run_cli('tools/torch2paddle.py', '--src', tmp_path, '--dst', dst)
    assert proc.returncode != 0 and len(stderr_lines(proc)) == 1
    assert 'no checkpoints' in proc.stderr and not dst.exists()


@pytest.mark.full
@pytest.mark.torch
def test_truncated_zip(tmp_path):
    import torch
    from oracle import oracle_state_dict
    good, src, dst = tmp_path / 'good.pth', tmp_path / 'cut.pth', tmp_path / 'out.pdparams'
    torch.save(oracle_state_dict('dla_46_c'), good)
    src.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst)
    _assert_clean_failure(proc, dst, 'cut.pth is truncated')


@pytest.mark.full
@pytest.mark.torch
def test_truncated_safetensors(tmp_path):
    from checkpoint_files import save_safetensors
    good, src, dst = tmp_path / 'good.safetensors', tmp_path / 'cut.safetensors', tmp_path / 'o.pdparams'
    save_safetensors('dla_46_c', good)
    src.write_bytes(good.read_bytes()[:-1000])
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst)
    _assert_clean_failure(proc, dst, 'truncated or corrupt')


@pytest.mark.full
@pytest.mark.torch
@pytest.mark.parametrize('payload', ['dict of lists', 'list of tensors', 'text'])
def test_unsupported_layout(tmp_path, payload):
    import torch
    src, dst = tmp_path / 'odd.pth', tmp_path / 'out.pdparams'
    torch.save({'dict of lists': {'weights': [1, 2, 3]}, 'list of tensors': [torch.zeros(2)],
                'text': 'text'}[payload], src)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst)
    _assert_clean_failure(proc, dst)
    assert 'state dict' in proc.stderr


class _Hostile:
    """Unpickling this would create a file: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.torch
@pytest.mark.full  # the fast tier has code-in-a-.pth in test_hostile_weights.py
@pytest.mark.parametrize('container', ['zip', 'legacy'])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, container):
    import torch
    marker = tmp_path / 'pwned'
    src, dst = tmp_path / 'evil.pth', tmp_path / 'out.pdparams'
    payload = {'state_dict': {'fc.weight': torch.zeros(1)}, 'trap': _Hostile(marker)}
    if container == 'zip':
        torch.save(payload, src)
    else:
        src.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst)
    _assert_clean_failure(proc, dst, 'refused', 'could run code')
    assert not marker.exists()


@pytest.mark.full
@pytest.mark.torch
def test_name_hash_mismatch_is_refused_unless_overridden(tmp_path):
    import torch
    from checkpoint_files import official_layout
    src = tmp_path / 'dla34-ba72cf86.pth'  # an official file name, other content
    torch.save(official_layout('dla_34'), src)
    dst = tmp_path / 'out.pdparams'
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst)
    _assert_clean_failure(proc, dst, 'sha256 mismatch', 'dla34-ba72cf86.pth', '--no-hash-check')
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst, '--no-hash-check')
    assert proc.returncode == 0, proc.stderr
    assert 'published dla34-ba72cf86.pth (dla_34 official, identified by name only)' in proc.stdout
    assert '10 dead keys dropped' in proc.stdout and dst.exists()


@pytest.mark.full
@pytest.mark.torch
def test_verify_reports_agreement(tmp_path):
    from checkpoint_files import save_training_checkpoint
    src, dst = tmp_path / 'w.pth', tmp_path / 'out.pdparams'
    save_training_checkpoint('dla_60_res2next', src)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst, '--verify')
    assert proc.returncode == 0, proc.stderr
    assert re.search(r'verify: max abs logit error \S+, relative \S+ '
                     rf'\(limit {FLOAT32_LIMIT:g}\), top-1 agreement (\d)/\1: OK',
                     proc.stdout), proc.stdout


@pytest.mark.torch
def test_verify_catches_a_wrong_conversion():
    from oracle import oracle_state_dict
    from paddle_dla.weights.convert import convert_state_dict
    from paddle_dla.weights.convert.verify import verify_with_timm
    torch_state = {k: v.numpy() for k, v in oracle_state_dict('dla_46_c').items()}
    paddle_state = convert_state_dict(torch_state, 'dla_46_c')
    paddle_state['level3.tree1.tree2.bn2._mean'] = paddle_state['level3.tree1.tree2.bn2._mean'] + 3
    report = verify_with_timm('dla_46_c', torch_state, paddle_state)
    assert not report.ok and report.relative > 1e-2


NO_TORCH = ("import sys; sys.modules['torch'] = None; "
            "from paddle_dla.cli.convert import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.torch
def test_without_torch_every_format_converts_to_the_same_bytes(tmp_path):
    from checkpoint_files import save_official_legacy, save_safetensors, save_timm
    st, pth, legacy = (tmp_path / 'model.safetensors', tmp_path / 'model.pth',
                       tmp_path / 'legacy.pth')
    save_safetensors('dla_46x_c', st)
    save_timm('dla_46x_c', pth)
    save_official_legacy('dla_46x_c', legacy)
    env = child_env()
    run = lambda *a: subprocess.run([sys.executable, '-c', NO_TORCH, *map(str, a)],
                                    capture_output=True, text=True, env=env, timeout=300)
    proc = run('--src', st, '--dst', tmp_path / 'a.pdparams', '--verify')
    assert proc.returncode == 2 and not (tmp_path / 'a.pdparams').exists()
    assert proc.stderr.count('\n') == 1 and 'pip install torch torchvision timm' in proc.stderr
    proc = run('--src', st, '--dst', tmp_path / 'a.pdparams')
    assert proc.returncode == 0, proc.stderr
    assert '-> dla_46x_c, ' in proc.stdout
    proc = run('--src', pth, '--dst', tmp_path / 'b.pdparams')
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / 'a.pdparams').read_bytes() == (tmp_path / 'b.pdparams').read_bytes()
    proc = run('--src', legacy, '--dst', tmp_path / 'c.pdparams')
    assert proc.returncode == 0, proc.stderr
    assert '-> dla_46x_c, ' in proc.stdout
    assert (tmp_path / 'a.pdparams').read_bytes() == (tmp_path / 'c.pdparams').read_bytes()


@pytest.mark.full
@pytest.mark.torch
def test_batch_continues_past_bad_files_and_reports_them(tmp_path):
    from checkpoint_files import save_timm
    src, dst = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    save_timm('dla_46_c', src / 'a_good.pth')
    (src / 'b_junk.pth').write_bytes(b'junk' * 10)
    save_timm('dla_34', src / 'c_good.pth')
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst)
    assert proc.returncode != 0
    assert 'converted 2 of 3 checkpoints' in proc.stdout
    (line,) = stderr_lines(proc)  # one line, naming the bad file and only it
    assert line.startswith('torch2paddle: error: 1 of 3 checkpoints failed: b_junk.pth: '), line
    assert 'a_good' not in line and 'c_good' not in line
    assert sorted(p.name for p in dst.iterdir()) == ['a_good.pdparams', 'c_good.pdparams']


@pytest.mark.full
def test_help_shows_examples_for_each_input_kind():
    proc = run_cli('tools/torch2paddle.py', '--help')
    assert proc.returncode == 0, proc.stderr
    for kind in ('dla34-ba72cf86.pth', 'timm mirror', '.safetensors', "{'state_dict'",
                 '--src checkpoints/', '--verify', '--no-hash-check'):
        assert kind in proc.stdout, kind
