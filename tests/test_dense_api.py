"""The dense models' Python API without PyTorch: names and factories, what they take and
refuse, what they return, and an image through a model to boxes or a class map."""
import os

import numpy as np
import paddle
import pytest
import skimage

import paddle_dla
from paddle_dla.tasks.serving import DenseSpec, run_dense
from paddle_dla.models.dense_variants import DENSE_VARIANTS

PHOTO = os.path.join(skimage.data_dir, 'chelsea.png')
DENSE = ['dla34up', 'dla60up', 'dla102up', 'dla169up', 'centernet_dla34', 'fairmot_dla34']


def test_list_models_keeps_the_classifiers_and_lists_dense_models_by_task():
    assert paddle_dla.list_models() == list(paddle_dla.VARIANTS)
    assert paddle_dla.list_models(task='segmentation') == DENSE[:4]
    assert paddle_dla.list_models(task='detection') == ['centernet_dla34']
    assert paddle_dla.list_models(task='tracking') == ['fairmot_dla34']
    assert paddle_dla.list_models(task=None) == list(paddle_dla.VARIANTS) + DENSE
    with pytest.raises(ValueError, match='task must be one of'):
        paddle_dla.list_models(task='pose')


def test_every_dense_model_has_a_factory_like_the_classifiers():
    assert list(DENSE_VARIANTS) == DENSE
    for name in DENSE:
        assert callable(getattr(paddle_dla, name)), name
    model = paddle_dla.centernet_dla34(heads={'hm': 3, 'wh': 2})
    assert model.output_names == ['hm', 'wh']


def test_outputs_of_each_kind_at_stride_4_or_input_resolution():
    x = paddle.randn([1, 3, 64, 96])
    fairmot = paddle_dla.create_model('fairmot_dla34')
    fairmot.eval()
    with paddle.no_grad():
        out = fairmot(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        'hm': (1, 1, 16, 24), 'wh': (1, 4, 16, 24), 'id': (1, 128, 16, 24), 'reg': (1, 2, 16, 24)}
    seg = paddle_dla.create_model('dla34up', num_classes=5, return_logits=True)
    seg.eval()
    with paddle.no_grad():
        logprobs, logits = seg(x)
    assert tuple(logprobs.shape) == (1, 5, 64, 96) and tuple(logits.shape) == (1, 5, 32, 48)
    np.testing.assert_allclose(np.exp(logprobs.numpy()).sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize('name,kwargs,error,phrase', [
    ('dla34up', {'heads': {'hm': 1}}, TypeError, 'takes num_classes='),
    ('centernet_dla34', {'num_classes': 3}, TypeError, 'takes heads='),
    ('centernet_dla34', {'heads': {'base': 3}}, ValueError, 'taken by the network'),
    ('centernet_dla34', {'heads': {'hm': 0}}, ValueError, 'positive channel count'),
    ('centernet_dla34', {'heads': {}}, ValueError, '1 to 64 heads'),
    ('centernet_dla34', {'heads': {'hm': 1, 'state_dict': 2}}, ValueError, 'taken by the network'),
    ('centernet_dla34', {'pretrained': True}, ValueError, 'no published Paddle weights'),
])
def test_what_a_dense_factory_refuses(name, kwargs, error, phrase):
    with pytest.raises(error, match=phrase):
        paddle_dla.create_model(name, **kwargs)


def test_inputs_must_be_multiples_of_32():
    model = paddle_dla.create_model('centernet_dla34')
    with pytest.raises(ValueError, match='multiples of 32'):
        model(paddle.randn([1, 3, 64, 80]))


@pytest.mark.paddle_compat
@pytest.mark.parametrize('name', ['centernet_dla34', 'dla34up'])
def test_an_image_through_a_model_to_boxes_or_a_class_map(name):
    model = paddle_dla.create_model(name)
    model.eval()
    spec = DenseSpec.of_model(model, height=128, width=128)

    def run(batch):
        with paddle.no_grad():
            return model(paddle.to_tensor(batch))
    result = run_dense(spec, run, PHOTO, k=10)
    height, width = np.asarray(result.image).shape[:2]
    if result.classes is not None:
        assert result.classes.shape == (height, width)
        assert result.classes.max() < 19
    else:
        detections = result.detections
        assert detections.boxes.shape == (10, 4) and len(spec.class_names) == 80
        assert (np.diff(detections.scores) <= 0).all() and detections.classes.max() < 80
    assert result.drawn(spec.class_names).size == (width, height)


def test_the_necks_over_any_features_only_backbone_with_or_without_dcn():
    from paddle_dla.models.necks import DLAUp, IDAUp
    backbone = paddle_dla.create_model('dla_60', features_only=True, out_indices=(2, 3, 4, 5))
    channels = backbone.feature_info.channels()           # 128, 256, 512, 1024
    for deformable in (True, False):
        neck = DLAUp(channels, [1, 2, 4, 8], deformable=deformable)
        ida = IDAUp(channels[0], channels[:3], [1, 2, 4], deformable=deformable)
        with paddle.no_grad():
            refined = neck(backbone(paddle.randn([1, 3, 64, 96])))
            merged = ida(refined[:3])
        assert [tuple(r.shape) for r in refined] == [
            (1, 128, 16, 24), (1, 256, 8, 12), (1, 512, 4, 6), (1, 1024, 2, 3)]
        assert tuple(merged[-1].shape) == (1, 128, 16, 24)
        offsets = [k for k in neck.state_dict() if 'conv_offset_mask' in k]
        assert bool(offsets) == deformable
    plain = paddle_dla.create_model('centernet_dla34', deformable=False)
    assert not any('conv_offset_mask' in k for k in plain.state_dict())
