"""paddle2torch.py: .pdparams back to PyTorch, loadable by timm strictly, bit-exact round trip."""
import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

import paddle_dla
from helpers import run_cli, stderr_lines


@pytest.mark.torch
@pytest.mark.full  # the fast tier writes .safetensors with paddle2torch (below)
@pytest.mark.parametrize('name,classes', [('dla_34', 1000), ('dla_102x2', 1000),
                                          ('dla_60_res2net', 10)])
def test_round_trip_is_bit_exact_and_timm_loads_strictly(tmp_path, name, classes):
    import timm
    import torch
    from checkpoint_files import save_training_checkpoint
    src = tmp_path / 'source.pth'
    save_training_checkpoint(name, src, num_classes=classes)
    first, back, second = tmp_path / 'a.pdparams', tmp_path / 'back.pth', tmp_path / 'b.pdparams'
    assert run_cli('tools/torch2paddle.py', '--src', src, '--dst', first).returncode == 0
    proc = run_cli('tools/paddle2torch.py', '--src', first, '--dst', back)
    assert proc.returncode == 0, proc.stderr
    assert f'{name}, {classes} classes' in proc.stdout

    model = timm.create_model(paddle_dla.get_config(name).official_name, num_classes=classes)
    result = model.load_state_dict(torch.load(back, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    assert run_cli('tools/torch2paddle.py', '--src', back, '--dst', second).returncode == 0
    a, b = paddle.load(str(first), return_numpy=True), paddle.load(str(second), return_numpy=True)
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.torch
def test_safetensors_output_is_readable_by_the_safetensors_package(tmp_path):
    import timm
    import torch
    from oracle import oracle_state_dict
    from paddle_dla.weights.checkpoint import save_pdparams
    from paddle_dla.weights.convert import convert_state_dict
    pd, out = tmp_path / 's.pdparams', tmp_path / 'model.safetensors'
    save_pdparams(convert_state_dict(oracle_state_dict('dla_46_c'), 'dla_46_c'), pd)
    proc = run_cli('tools/paddle2torch.py', '--src', pd, '--dst', out)
    assert proc.returncode == 0, proc.stderr
    theirs = load_file(str(out))
    ours = paddle.load(str(pd), return_numpy=True)
    np.testing.assert_array_equal(theirs['level2.root.bn.running_var'],
                                  ours['level2.root.bn._variance'])
    model = timm.create_model('dla46_c')
    model.load_state_dict({k: torch.from_numpy(v) for k, v in theirs.items()}, strict=True)


@pytest.mark.full
def test_bad_input_gives_one_line(tmp_path):
    proc = run_cli('tools/paddle2torch.py', '--src', tmp_path / 'absent.pdparams', '--dst',
                   tmp_path / 'x.pth')
    assert proc.returncode != 0 and not (tmp_path / 'x.pth').exists()
    assert len(stderr_lines(proc)) == 1 and 'no such weights file' in proc.stderr
