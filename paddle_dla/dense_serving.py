"""An image in, decoded detections or a class map out, for the dense networks, whether
they run exported (a Predictor) or eagerly: the one place that ties the input recipe,
the network and the decoding together, for ``predict`` and library users alike."""
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np

from .decode import Detections, decode_detections, segment
from .dense_input import letterbox_image, read_image, stretch_image
from .dense_variants import DenseInput
from .drawing import draw_detections, draw_segmentation

DEFAULT_TOP_K = 100        # CenterNet's K
DEFAULT_THRESHOLD = 0.3    # CenterNet's demo threshold for drawing


@dataclass(frozen=True)
class DenseSpec:
    """What serving a dense model needs: task, output names, input recipe, classes."""

    task: str
    output_names: Tuple[str, ...]
    input: DenseInput
    stride: int
    class_names: Optional[Tuple[str, ...]] = None

    @classmethod
    def of_export(cls, meta):
        names = meta.get('class_names')
        return cls(meta['task'], tuple(meta['outputs']), DenseInput.from_dict(meta['input']),
                   int(meta.get('stride') or 1), tuple(names) if names else None)

    @classmethod
    def of_model(cls, model, height=None, width=None):
        config = model.config
        recipe = replace(config.input, height=height or config.input.height,
                         width=width or config.input.width)
        classes = dict(getattr(model, 'heads', {}) or {}).get(
            'hm', getattr(model, 'num_classes', 0))
        names = config.class_names if len(config.class_names) == classes else None
        return cls(config.task, tuple(model.output_names), recipe,
                   config.down_ratio if config.is_centernet else 1, names)

    @property
    def is_segmentation(self):
        return self.task == 'segmentation'


@dataclass
class DenseResult:
    """One image's answer: detections in its pixels, or its per-pixel classes."""

    image: object                          # the RGB PIL image as decoded
    detections: Optional[Detections] = None
    classes: Optional[np.ndarray] = None   # (H, W) at the image's size

    def drawn(self, class_names=None, threshold=DEFAULT_THRESHOLD):
        if self.classes is not None:
            return draw_segmentation(self.image, self.classes)
        return draw_detections(self.image, self.detections, class_names, threshold)


def prepare(spec, image):
    """(input batch of one, geometry, decoded image) by the spec's recipe."""
    picture = read_image(image)
    recipe = spec.input
    make = stretch_image if recipe.resize == 'stretch' else letterbox_image
    array, geometry = make(picture, (recipe.height, recipe.width), recipe.mean, recipe.std,
                           recipe.channel_order)
    return array[None].astype(np.float32), geometry, picture


def as_named_outputs(spec, outputs):
    """A network's outputs (dict, tuple, one tensor; Paddle or numpy) as ``{name: array}``."""
    if isinstance(outputs, dict):
        items = outputs.items()
    else:
        seq = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        items = zip(spec.output_names, seq)
    return {name: np.asarray(value.numpy() if hasattr(value, 'numpy') else value)
            for name, value in items}


def interpret(spec, outputs, geometry, picture, k=DEFAULT_TOP_K):
    """One image's outputs -> :class:`DenseResult` in the image's own pixels."""
    outputs = as_named_outputs(spec, outputs)
    if spec.is_segmentation:
        classes = segment(outputs[spec.output_names[0]])[0]
        return DenseResult(picture, classes=geometry.to_image(classes))
    detections = decode_detections(outputs, k)[0].to_image(geometry, spec.stride)
    return DenseResult(picture, detections=detections)


def run_dense(spec, run, image, k=DEFAULT_TOP_K):
    """``image`` (path or PIL) through ``run`` (a Predictor or eager callable) ->
    :class:`DenseResult`."""
    batch, geometry, picture = prepare(spec, image)
    return interpret(spec, run(batch), geometry, picture, k)
