"""Strict loading of .pdparams files: every mismatch is an error naming the keys."""
import numpy as np
import paddle
import pytest

import paddle_dla
from paddle_dla import StateDictMismatch
from paddle_dla.weights.checkpoint import load_pdparams, save_pdparams

pytestmark = pytest.mark.paddle_compat


@pytest.fixture(scope='module')
def good_state():
    paddle.seed(0)
    return {k: v.numpy() for k, v in paddle_dla.dla_46_c().state_dict().items()}


def _save(tmp_path, state, name='w.pdparams'):
    return save_pdparams(state, tmp_path / name)


def test_roundtrip_loads_exactly(tmp_path, good_state):
    model = paddle_dla.dla_46_c(pretrained=_save(tmp_path, good_state))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), good_state[key])


def test_missing_key_is_refused_by_name(tmp_path, good_state):
    state = dict(good_state)
    del state['level3.tree1.tree2.bn2._variance']
    with pytest.raises(StateDictMismatch, match=r'missing keys \[level3.tree1.tree2.bn2._variance\]'):
        paddle_dla.dla_46_c(pretrained=_save(tmp_path, state))


def test_extra_key_is_refused_by_name(tmp_path, good_state):
    state = dict(good_state, **{'level4.project.0.weight': np.zeros((128, 64, 1, 1), 'float32')})
    with pytest.raises(StateDictMismatch, match=r'unexpected keys \[level4.project.0.weight\]'):
        paddle_dla.dla_46_c(pretrained=_save(tmp_path, state))


def test_wrong_shape_is_refused_by_name(tmp_path, good_state):
    key = 'level3.tree1.tree1.bn1.weight'
    state = dict(good_state, **{key: good_state[key][:10]})
    width = good_state[key].shape[0]
    with pytest.raises(StateDictMismatch, match=rf'mis-shaped keys \[{key} \(expected '
                                                rf'\[{width}\], found \[10\]\)'):
        paddle_dla.dla_46_c(pretrained=_save(tmp_path, state))
    # ...while a classifier of another class count is left to the model, with a warning
    state = dict(good_state, **{'fc.weight': good_state['fc.weight'][:10], 'fc.bias':
                                good_state['fc.bias'][:10]})
    with pytest.warns(UserWarning, match='pretrained classifier not loaded'):
        assert paddle_dla.dla_46_c(pretrained=_save(tmp_path, state)).num_classes == 1000
    assert paddle_dla.dla_46_c(num_classes=10, pretrained=_save(tmp_path, state)).num_classes == 10


def test_features_only_loads_a_classifier_checkpoint(tmp_path, good_state):
    model = paddle_dla.dla_46_c(features_only=True, out_indices=(1, 2, 3),
                                pretrained=_save(tmp_path, good_state))
    np.testing.assert_array_equal(model.level3.tree2.root.conv.weight.numpy(),
                                  good_state['level3.tree2.root.conv.weight'])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such weights file'):
        paddle_dla.dla_46_c(pretrained=str(tmp_path / 'absent.pdparams'))
    bad = tmp_path / 'bad.pdparams'
    bad.write_bytes(b'not a pickle at all')
    with pytest.raises(ValueError, match='not a readable weights file'):
        load_pdparams(bad)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, good_state, monkeypatch):
    _save(tmp_path, good_state)
    with pytest.raises(TypeError, match='not numeric'):
        save_pdparams({'x': object()}, tmp_path / 'broken.pdparams')

    def fail_midway(obj, path):
        with open(path, 'wb') as f:
            f.write(b'partial')
        raise OSError('disk full')
    monkeypatch.setattr(paddle, 'save', fail_midway)
    with pytest.raises(OSError, match='disk full'):
        save_pdparams(good_state, tmp_path / 'w.pdparams')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['w.pdparams']
    assert load_pdparams(tmp_path / 'w.pdparams').keys() == good_state.keys()
