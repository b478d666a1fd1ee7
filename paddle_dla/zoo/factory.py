"""``create_model``: the registry entry of a name says its family; the family's builder
builds the network and loads the weights by that family's rules."""
from ..models.registry import CLASSIFIER_FAMILY, DENSE_FAMILY, get_model
from .classifier import create_classifier
from .dense import create_dense_model

BUILDERS = {CLASSIFIER_FAMILY: create_classifier, DENSE_FAMILY: create_dense_model}


def create_model(name, pretrained=False, **kwargs):
    """Build a model by name: a classifier (ours, ``dla_60``, or timm's, ``dla60``) or a
    dense network (``centernet_dla34``, ``fairmot_dla34``, ``dla34up`` ..).

    Args:
        name: see :func:`paddle_dla.list_models` (``task=None`` for every name).
        pretrained: ``False``; ``True`` for the default published weights (downloaded,
            verified, converted and cached on first use); a tag such as ``'tricks'``; or a
            path to a ``.pdparams``, ``.pth`` or ``.safetensors`` file. However they come,
            the weights are fitted alike: another ``num_classes`` than theirs keeps a fresh
            classifier, another ``in_chans`` adapts their first convolution (each with a
            warning), and weights of another variant are refused.
        **kwargs: ``num_classes`` (alias ``class_dim``), ``in_chans``, ``drop_rate``,
            ``with_pool``, ``features_only``, ``out_indices``.

    The dense networks take ``heads``, ``head_conv``, ``num_classes``, ``return_logits``
    and ``deformable`` instead, and their weights from a checkpoint file: see
    :func:`paddle_dla.zoo.dense.create_dense_model`.
    """
    entry = get_model(name)
    return BUILDERS[entry.family](entry.name, pretrained=pretrained, **kwargs)
