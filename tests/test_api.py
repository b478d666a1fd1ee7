"""The public API: factories, names, heads, feature extraction, pooling."""
import numpy as np
import paddle
import pytest

import paddle_dla
from helpers import FLOAT64_LIMIT, relative_error, run_paddle


def test_list_models_and_factories():
    names = paddle_dla.list_models()
    assert names == ['dla_34', 'dla_46_c', 'dla_46x_c', 'dla_60x_c', 'dla_60', 'dla_60x',
                     'dla_102', 'dla_102x', 'dla_102x2', 'dla_169', 'dla_60_res2net',
                     'dla_60_res2next']
    for name in names:
        factory = getattr(paddle_dla, name)
        assert factory.__name__ == name and name in factory.__doc__


@pytest.mark.parametrize('alias', ['dla60', 'dla_60', 'DLA-60', 'Dla60'])
def test_create_model_accepts_our_and_timm_names(alias):
    assert paddle_dla.create_model(alias).config.name == 'dla_60'


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown model 'dla_61'.*'dla_60'"):
        paddle_dla.create_model('dla_61')


def test_num_classes_class_dim_and_reset_classifier():
    x = paddle.randn([2, 3, 64, 64])
    model = paddle_dla.dla_46_c(num_classes=10)
    model.eval()
    assert model(x).shape == [2, 10] and model.get_classifier().weight.shape == [10, 256, 1, 1]
    assert paddle_dla.dla_46_c(class_dim=7).num_classes == 7
    with pytest.raises(TypeError, match='disagree'):
        paddle_dla.dla_46_c(class_dim=7, num_classes=8)
    model.reset_classifier(5)
    assert model(x).shape == [2, 5] and model.num_classes == 5
    model.reset_classifier(0)
    assert model.get_classifier() is None and model(x).shape == [2, model.num_features]


@pytest.mark.torch
def test_num_classes_zero_returns_pooled_features_equal_to_pre_logits():
    from oracle import paddle_model_from_oracle
    reference = paddle_model_from_oracle('dla_34', 'float64')
    headless = paddle_dla.dla_34(num_classes=0)
    headless.to(dtype='float64')
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith('fc.')}
    paddle_dla.load_state_dict_strict(headless, state)
    headless.eval()
    x = paddle.randn([2, 3, 64, 64], dtype='float64')
    pooled = headless(x)
    assert pooled.shape == [2, 512] and headless.num_features == 512
    pre_logits = reference.forward_head(reference.forward_features(x), pre_logits=True)
    np.testing.assert_array_equal(pooled.numpy(), pre_logits.numpy())


def test_in_chans_one():
    model = paddle_dla.dla_34(in_chans=1)
    model.eval()
    assert model.base_layer[0].weight.shape == [16, 1, 7, 7]
    assert model(paddle.randn([1, 1, 64, 64])).shape == [1, 1000]


def test_without_pool_the_classifier_is_dense():
    model = paddle_dla.dla_46_c(with_pool=False, num_classes=3)
    model.eval()
    assert model(paddle.randn([1, 3, 128, 96])).shape == [1, 3, 4, 3]


def test_drop_rate_only_in_training():
    """Dropout makes two training-mode forwards of one batch differ; without it (or in eval
    mode) they are equal, so the difference is the dropout's (BatchNorm in training mode
    normalises with the batch's own statistics, the same both times)."""
    paddle.seed(0)
    x = paddle.randn([2, 3, 32, 32])
    model = paddle_dla.dla_46_c(drop_rate=0.5)
    assert isinstance(model.head_drop, paddle.nn.Dropout)
    plain = paddle_dla.dla_46_c(drop_rate=0.0)
    plain.set_state_dict(model.state_dict())
    with paddle.no_grad():
        model.train()
        assert not np.array_equal(model(x).numpy(), model(x).numpy())
        plain.train()
        np.testing.assert_array_equal(plain(x).numpy(), plain(x).numpy())
        model.eval()
        np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())


@pytest.mark.torch
def test_adaptive_pool_equals_official_avgpool7_at_224_and_small_inputs_work():
    from oracle import paddle_model_from_oracle
    model = paddle_model_from_oracle('dla_46_c', 'float64')
    x = paddle.randn([1, 3, 224, 224], dtype='float64')
    with paddle.no_grad():
        features = model.forward_features(x)
        assert features.shape == [1, 256, 7, 7]
        official = model.fc(paddle.nn.functional.avg_pool2d(features, 7)).flatten(1)
        np.testing.assert_allclose(model(x).numpy(), official.numpy(), rtol=0, atol=1e-12)
        # Any size from 32 px, also odd sizes where the official (floor-mode) pooling fails.
        for size in [(32, 32), (33, 47), (40, 300), (225, 231)]:
            assert model(paddle.randn([1, 3, *size], dtype='float64')).shape == [1, 1000]


@pytest.mark.torch
@pytest.mark.parametrize('name', ['dla_34', 'dla_60x_c', pytest.param('dla_169', marks=pytest.mark.full),
                                  pytest.param('dla_60_res2net', marks=pytest.mark.full)])
def test_features_only_equals_timm(name):
    import torch
    from oracle import oracle, paddle_model_from_oracle, random_images
    reference = oracle(name, features_only=True)
    ours = paddle_model_from_oracle(name, 'float64', features_only=True)
    assert ours.feature_info.channels() == reference.feature_info.channels()
    assert ours.feature_info.reduction() == reference.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert ours.feature_info.module_name() == ['level1', 'level2', 'level3', 'level4', 'level5']
    images = random_images((2, 3, 64, 96))
    with torch.no_grad():
        theirs = [t.numpy() for t in reference(images)]
    mine = run_paddle(ours, images)
    assert [m.shape for m in mine] == [t.shape for t in theirs]
    for m, t in zip(mine, theirs):
        assert relative_error(m, t) <= FLOAT64_LIMIT


def test_features_only_out_indices_builds_only_needed_levels():
    model = paddle_dla.dla_34(features_only=True, out_indices=(0, 2))
    model.eval()
    assert not hasattr(model, 'level3') and model.get_classifier() is None
    outs = model(paddle.randn([1, 3, 64, 64]))
    assert [o.shape for o in outs] == [[1, 16, 64, 64], [1, 64, 16, 16]]
    assert model.feature_info.channels() == [16, 64]
    with pytest.raises(ValueError, match='out_indices'):
        paddle_dla.dla_34(features_only=True, out_indices=(6,))


def test_classifier_model_feature_info_covers_all_levels():
    info = paddle_dla.dla_60().feature_info
    assert info.channels() == [16, 32, 128, 256, 512, 1024]
    assert info.reduction() == [1, 2, 4, 8, 16, 32]


def test_official_weight_init():
    paddle.seed(0)
    model = paddle_dla.dla_60()
    conv = model.level5.tree1.conv2  # 3x3, 512 groups-of-1 channels
    k, out = conv.weight.shape[2], conv.weight.shape[0]
    std = float(conv.weight.numpy().std())
    assert abs(std - np.sqrt(2.0 / (k * k * out))) < 0.02 * std
    bn = model.level5.tree1.bn2
    assert np.all(bn.weight.numpy() == 1) and np.all(bn.bias.numpy() == 0)
