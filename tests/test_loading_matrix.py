"""Weights arriving four ways (a registry tag, a .pdparams, a .pth and a .safetensors file) are
fitted to the model by the same rules: the same classes load as they are; other num_classes
keep a fresh classifier; other in_chans adapt the first convolution as timm does; a
checkpoint of another variant is refused in one line naming its variant.

Random weights of small variants, written by paddle_dla itself (the .pth files record by record,
as torch.save writes them, so only the timm cross-checks need torch)."""
import warnings

import numpy as np
import paddle
import pytest

import paddle_dla
from paddle_dla.weights.checkpoint import StateDictMismatch, save_pdparams
from paddle_dla.weights.convert.mapping import to_paddle_key, to_torch_key
from paddle_dla.weights.convert.readers import write_safetensors
from paddle_dla.zoo.classifier import VariantMismatch, adapt_input_conv, load_pretrained
from torch_files import official_layout, save_state_dict

VARIANT = 'dla_46_c'
OTHER = 'dla_34'            # the wrong variant's checkpoint
WAYS = ('registry', 'pdparams', 'pth', 'safetensors')
FIRST_CONV = 'base_layer.0.weight'


@pytest.fixture(scope='module')
def source_state():
    """A dla_46_c built by paddle_dla (random weights), its BatchNorm statistics randomised
    too so that every loaded tensor is told apart from a fresh model's."""
    paddle.seed(0)
    rng = np.random.default_rng(0)
    state = {k: v.numpy() for k, v in paddle_dla.create_model(VARIANT).state_dict().items()}
    for key in state:
        if key.endswith(('_mean', '_variance')):
            state[key] = rng.uniform(0.5, 1.5, state[key].shape).astype(np.float32)
    return state


@pytest.fixture(scope='module')
def other_state():
    """Random weights under every (Paddle) key of a dla_34 checkpoint."""
    return {to_paddle_key(k): v for k, v in official_layout(OTHER, dead_keys=False).items()
            if not k.endswith('num_batches_tracked')}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty weights cache; a dead mirror, so that nothing is ever downloaded."""
    monkeypatch.setenv('PADDLE_DLA_HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('PADDLE_DLA_MIRROR', 'http://127.0.0.1:9')
    return tmp_path / 'home'


def _torch_named(state, counters=False):
    out = {}
    for key, value in state.items():
        out[to_torch_key(key)] = value
        if counters and key.endswith('._variance'):
            out[key[:-len('_variance')] + 'num_batches_tracked'] = np.array(7, np.int64)
    return out


def place(way, state, folder):
    """Put the Paddle-named ``state`` where ``way`` reads it; the ``pretrained`` argument."""
    if way == 'registry':  # the model variant's cache entry, whatever the state holds
        save_pdparams(state, folder / 'home' / f'{VARIANT}-official.pdparams')
        return 'official'
    path = folder / f'weights.{way}'
    if way == 'pdparams':
        save_pdparams(state, path)
    elif way == 'pth':
        save_state_dict(_torch_named(state, counters=True), path)
    else:
        write_safetensors(_torch_named(state), path)
    return str(path)


def create(pretrained, **kwargs):
    """``create_model`` with every warning recorded: ``(model, warnings)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        model = paddle_dla.create_model(VARIANT, pretrained=pretrained, **kwargs)
    return model, [w for w in caught if not issubclass(w.category, DeprecationWarning)]


def loaded(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def assert_equal_but(model, source, *skipped):
    """Every tensor of the model equals the source's, but those under the prefixes ``skipped``."""
    got = {k: v for k, v in loaded(model).items() if not k.startswith(skipped)}
    assert sorted(got) == sorted(k for k in source if not k.startswith(skipped))
    for key, value in got.items():
        np.testing.assert_array_equal(value, source[key], err_msg=key)


def one_warning(caught, pattern):
    assert len(caught) == 1, [str(w.message) for w in caught]
    (warning,) = caught
    assert issubclass(warning.category, UserWarning)
    assert pattern in str(warning.message), warning.message
    assert warning.filename == __file__  # attributed to the caller, not to paddle_dla
    return str(warning.message)


@pytest.mark.parametrize('way', WAYS)
def test_same_classes_load_every_tensor_silently(way, source_state, home, tmp_path):
    model, caught = create(place(way, source_state, tmp_path))
    assert caught == []
    assert_equal_but(model, source_state)
    if way == 'registry':  # True names the same entry
        again, caught = create(True)
        assert caught == [] and all(np.array_equal(v, source_state[k])
                                    for k, v in loaded(again).items())


@pytest.mark.parametrize('way', WAYS)
def test_other_num_classes_keeps_a_fresh_classifier_with_one_warning(way, source_state, home,
                                                                    tmp_path):
    model, caught = create(place(way, source_state, tmp_path), num_classes=10)
    message = one_warning(caught, 'pretrained classifier not loaded (fc.bias, fc.weight)')
    assert '1000 classes and num_classes=10' in message
    assert model.fc.weight.shape == [10, 256, 1, 1] and model.num_classes == 10
    assert np.abs(model.fc.weight.numpy()).max() > 0
    assert_equal_but(model, source_state, 'fc.')


@pytest.mark.parametrize('way', WAYS)
def test_num_classes_zero_drops_the_classifier_silently(way, source_state, home, tmp_path):
    model, caught = create(place(way, source_state, tmp_path), num_classes=0)
    assert caught == [] and model.get_classifier() is None
    assert_equal_but(model, source_state, 'fc.')


@pytest.mark.parametrize('in_chans', [1, 4])
@pytest.mark.parametrize('way', WAYS)
def test_other_in_chans_adapts_the_first_convolution_with_one_warning(way, in_chans,
                                                                     source_state, home,
                                                                     tmp_path):
    model, caught = create(place(way, source_state, tmp_path), in_chans=in_chans)
    one_warning(caught, f'first convolution ({FIRST_CONV}) adapted from 3 to in_chans={in_chans}')
    weight = source_state[FIRST_CONV]
    got = loaded(model)[FIRST_CONV]
    assert got.shape == (16, in_chans, 7, 7)
    if in_chans == 1:
        np.testing.assert_allclose(got, weight.sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-7)
    else:  # channels 0, 1, 2, 0, each times 3/4 (exact in binary)
        np.testing.assert_array_equal(got, np.concatenate([weight, weight[:, :1]], 1) * 0.75)
    assert_equal_but(model, source_state, FIRST_CONV)
    model.eval()
    with paddle.no_grad():
        assert model(paddle.randn([1, in_chans, 32, 32])).shape == [1, 1000]


@pytest.mark.parametrize('way', WAYS)
def test_another_variant_is_named_in_one_line(way, other_state, home, tmp_path):
    pretrained = place(way, other_state, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(StateDictMismatch) as err:
            paddle_dla.create_model(VARIANT, pretrained=pretrained, num_classes=10, in_chans=1)
    assert not [w for w in caught if 'paddle_dla' in w.filename or 'pretrained' in
                str(w.message)]  # refused before any fitting is announced
    message = str(err.value)
    assert isinstance(err.value, VariantMismatch)
    assert err.value.found == [OTHER] and err.value.wanted == VARIANT
    assert f'is a {OTHER} checkpoint, not {VARIANT}' in message
    assert '\n' not in message and 'keys' not in message and len(message) < 300, message
    if way == 'registry':
        assert f'pretrained {VARIANT}.official' in message
        assert str(home / f'{VARIANT}-official.pdparams') in message
    else:
        assert pretrained in message and f'load it into a {OTHER} model' in message
    with pytest.raises(VariantMismatch):  # fine-tuning's path too
        load_pretrained(paddle_dla.create_model(VARIANT, num_classes=2), pretrained,
                        skip_classifier=True)


def test_both_differences_warn_once_each(source_state, home, tmp_path):
    model, caught = create(place('pdparams', source_state, tmp_path), num_classes=3, in_chans=2)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages
    assert sum('classifier not loaded' in m for m in messages) == 1
    assert sum('first convolution' in m for m in messages) == 1
    weight = source_state[FIRST_CONV]  # two channels: the repeat path, times 3/2
    np.testing.assert_array_equal(loaded(model)[FIRST_CONV], weight[:, :2] * 1.5)
    assert_equal_but(model, source_state, FIRST_CONV, 'fc.')


def test_features_only_adapts_the_first_convolution(source_state, home, tmp_path):
    model, caught = create(place('safetensors', source_state, tmp_path), in_chans=1,
                           features_only=True, out_indices=(1, 2))
    one_warning(caught, 'adapted from 3 to in_chans=1')
    got = loaded(model)
    np.testing.assert_allclose(got[FIRST_CONV], source_state[FIRST_CONV].sum(1, keepdims=True),
                               rtol=1e-6, atol=1e-7)
    for key in got:
        if key != FIRST_CONV:
            np.testing.assert_array_equal(got[key], source_state[key], err_msg=key)


def test_first_convolutions_that_cannot_be_adapted_say_so(source_state, home, tmp_path):
    grey = dict(source_state, **{FIRST_CONV: source_state[FIRST_CONV][:, :1]})
    path = tmp_path / 'grey.pdparams'
    save_pdparams(grey, path)
    for in_chans in (3, 4):
        with pytest.raises(StateDictMismatch, match=f'takes in_chans={in_chans} but the first '
                           f'convolution of .*grey.pdparams .* takes 1 channels, which cannot'):
            paddle_dla.create_model(VARIANT, pretrained=str(path), in_chans=in_chans)
    model, caught = create(str(path), in_chans=1)  # as the file is: nothing to adapt
    assert caught == []
    np.testing.assert_array_equal(loaded(model)[FIRST_CONV], grey[FIRST_CONV])


def test_a_misfit_of_the_right_variant_still_lists_its_keys(source_state, home, tmp_path):
    broken = {k: v for k, v in source_state.items() if k != 'level5.root.conv.weight'}
    path = tmp_path / 'broken.pdparams'
    save_pdparams(broken, path)
    with pytest.raises(StateDictMismatch, match=r'missing keys \[level5.root.conv.weight\]') \
            as err:
        paddle_dla.create_model(VARIANT, pretrained=str(path))
    assert not isinstance(err.value, VariantMismatch)


@pytest.mark.torch
@pytest.mark.parametrize('in_chans', [1, 2, 4, 5, 7])
def test_adaptation_matches_timm(in_chans):
    import torch
    from timm.models._manipulate import adapt_input_conv as timm_adapt
    weight = np.random.default_rng(in_chans).normal(size=(16, 3, 7, 7)).astype(np.float32)
    ours = adapt_input_conv(in_chans, weight)
    theirs = timm_adapt(in_chans, torch.from_numpy(weight.copy())).numpy()
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (16, in_chans, 7, 7)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.torch
def test_a_torch_saved_pth_fits_as_the_other_ways(source_state, tmp_path):
    import torch
    path = tmp_path / 'timm.pth'
    torch.save({k: torch.from_numpy(v) for k, v in _torch_named(source_state, True).items()},
               path)
    model, caught = create(str(path), num_classes=5, in_chans=4)
    assert len(caught) == 2
    assert_equal_but(model, source_state, FIRST_CONV, 'fc.')


def test_a_damaged_checkpoint_of_another_variant_is_named_as_its_closest(other_state, tmp_path):
    headless = {k: v for k, v in other_state.items() if not k.startswith('fc.')}
    path = tmp_path / 'headless.pdparams'
    save_pdparams(headless, path)  # fits no variant exactly (no classifier), dla_34 closest
    with pytest.raises(VariantMismatch, match=f'is closest to a {OTHER} checkpoint, not '
                                              f'{VARIANT}'):
        paddle_dla.create_model(VARIANT, pretrained=str(path), num_classes=0)
