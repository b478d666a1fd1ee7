"""The weights registry's metadata checked against the live models, as torchvision checks
its weights meta: what a loader adapts by name must exist with the described shape."""
import paddle

import paddle_dla
from paddle_dla.weights.registry import list_weights


def test_classifier_and_first_conv_name_the_live_layers():
    for weights in list_weights():
        with paddle.LazyGuard():
            model = paddle_dla.create_model(weights.variant, num_classes=weights.num_classes)
        layers = dict(model.named_sublayers())
        classifier, first_conv = layers[weights.classifier], layers[weights.first_conv]
        assert classifier is model.get_classifier()
        assert isinstance(classifier, paddle.nn.Conv2D) and isinstance(first_conv,
                                                                        paddle.nn.Conv2D)
        assert classifier.weight.shape[0] == weights.num_classes
        assert first_conv.weight.shape[1] == model.in_chans == 3


def test_preprocessing_is_the_reference_protocol():
    for weights in list_weights():
        recipe = weights.preprocessing
        assert (recipe.img_size, recipe.resize, recipe.interpolation) == (224, 256, 'bilinear')
        assert recipe.as_dict() == type(recipe).from_dict(recipe.as_dict()).as_dict()
