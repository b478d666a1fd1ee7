"""An image in, decoded detections or a class map out, for the dense networks, whether
they run exported (a Predictor) or eagerly: the one place that ties the input recipe,
the network and the decoding together, for ``predict`` and library users alike."""
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np

from ..models.dense_variants import DEFAULT_SCORE_THRESHOLD, DEFAULT_TOP_K, DenseInput
from .decode import Detections, decode_detections, segment
from .drawing import draw_detections, draw_segmentation
from .inputs import (affine_image, bgr_to_pil, letterbox_image, native_image, read_bgr, read_image,
                     stretch_image)


@dataclass(frozen=True)
class DenseSpec:
    """What serving a dense model needs: task, output names, input recipe, classes, and how
    many detections to decode and show."""

    task: str
    output_names: Tuple[str, ...]
    input: DenseInput
    stride: int
    class_names: Optional[Tuple[str, ...]] = None
    top_k: int = DEFAULT_TOP_K
    score_threshold: float = DEFAULT_SCORE_THRESHOLD

    @classmethod
    def of_export(cls, meta):
        names = meta.get('class_names')
        return cls(meta['task'], tuple(meta['outputs']), DenseInput.from_dict(meta['input']),
                   int(meta.get('stride') or 1), tuple(names) if names else None,
                   int(meta.get('top_k') or cls.top_k),
                   float(meta.get('score_threshold', cls.score_threshold)))

    @classmethod
    def of_model(cls, model, height=None, width=None, recipe=None, class_names=None):
        """The spec of a dense model at ``height`` x ``width`` (default its recipe's), with
        another input ``recipe`` or ``class_names`` if given."""
        config = model.config
        recipe = replace(recipe or config.input, height=height or config.input.height,
                         width=width or config.input.width)
        if class_names is not None:
            names = tuple(str(n) for n in class_names)
            if len(names) != model.num_classes:
                raise ValueError(f'{len(names)} class names for a model with '
                                 f'{model.num_classes} classes')
        else:
            names = (config.class_names if len(config.class_names) == model.num_classes
                     else None)
        return cls(config.task, tuple(model.output_names), recipe,
                   config.down_ratio if config.is_centernet else 1, names, config.top_k,
                   config.score_threshold)

    def fixed_to(self, input_shape):
        """The spec an export of ``input_shape`` can serve: a native recipe stretches images
        to an export fixed to one size."""
        spatial = tuple(input_shape[2:]) if input_shape else (None, None)
        if not self.input.native or None in spatial:
            return self
        height, width = (int(v) for v in spatial)
        return replace(self, input=replace(self.input, resize='stretch', height=height,
                                           width=width))

    def as_meta(self):
        """The fields an export records, for :meth:`of_export`."""
        return {'task': self.task, 'outputs': list(self.output_names), 'stride': self.stride,
                'input': self.input.as_dict(),
                'class_names': list(self.class_names) if self.class_names else None,
                'top_k': self.top_k, 'score_threshold': self.score_threshold}

    @property
    def is_segmentation(self):
        return self.task == 'segmentation'


@dataclass
class DenseResult:
    """One image's answer: detections in its pixels, or its per-pixel classes."""

    image: object                          # the RGB PIL image as decoded
    detections: Optional[Detections] = None
    classes: Optional[np.ndarray] = None   # (H, W) at the image's size

    def drawn(self, class_names=None, threshold=DEFAULT_SCORE_THRESHOLD):
        if self.classes is not None:
            return draw_segmentation(self.image, self.classes)
        return draw_detections(self.image, self.detections, class_names, threshold)


def prepare(spec, image, flip_test=False, keep_res=False):
    """(input batch, geometry, decoded image) by the spec's recipe: one image, or with
    ``flip_test`` the image and its mirror (CenterNet's flip test). ``keep_res``: CenterNet
    at the image's own resolution (the input then has its own size)."""
    recipe = spec.input
    size = (recipe.height, recipe.width)
    if recipe.resize in ('affine', 'letterbox'):   # CenterNet's and FairMOT's, with OpenCV
        pixels = read_bgr(image)
        if recipe.resize == 'letterbox':
            if flip_test or keep_res:
                raise ValueError('flip test and keep_res are CenterNet\'s test modes, not '
                                 'FairMOT\'s')
            array, geometry = letterbox_image(pixels, size, recipe.mean, recipe.std,
                                              recipe.channel_order, recipe.fill)
        else:
            array, geometry = affine_image(pixels, size, recipe.mean, recipe.std, keep_res)
        batch = np.stack([array, array[:, :, ::-1]]) if flip_test else array[None]
        return np.ascontiguousarray(batch), geometry, bgr_to_pil(pixels)
    if flip_test or keep_res:
        raise ValueError(f'flip test and keep_res are CenterNet\'s test modes; this '
                         f'{spec.task} model\'s input is a {recipe.resize}')
    picture = read_image(image)
    if recipe.native:
        array, geometry = native_image(picture, recipe.mean, recipe.std, recipe.channel_order)
    else:
        array, geometry = stretch_image(picture, size, recipe.mean, recipe.std,
                                        recipe.channel_order)
    return array[None].astype(np.float32), geometry, picture


def as_named_outputs(spec, outputs):
    """A network's outputs (dict, tuple, one tensor; Paddle or numpy) as ``{name: array}``."""
    if isinstance(outputs, dict):
        items = outputs.items()
    else:
        seq = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        if len(seq) != len(spec.output_names):
            raise ValueError(f'the model gave {len(seq)} outputs where '
                             f'{len(spec.output_names)} are named ({", ".join(spec.output_names)})')
        items = zip(spec.output_names, seq)
    return {name: np.asarray(value.numpy() if hasattr(value, 'numpy') else value)
            for name, value in items}


def interpret(spec, outputs, geometry, picture, k=None, flip_test=False):
    """One image's outputs (two with ``flip_test``) -> :class:`DenseResult` in the image's
    own pixels."""
    outputs = as_named_outputs(spec, outputs)
    if spec.is_segmentation:
        classes = segment(outputs[spec.output_names[0]])[0]
        return DenseResult(picture, classes=geometry.to_image(classes))
    detections = decode_detections(outputs, k or spec.top_k, flip_test)[0]
    return DenseResult(picture, detections=detections.to_image(geometry, spec.stride))


def run_dense(spec, run, image, k=None, flip_test=False, keep_res=False):
    """``image`` (path, PIL image or 8-bit BGR array) through ``run`` (a Predictor or an
    eager callable) -> :class:`DenseResult`, with ``k`` detections decoded (default the
    model's K). ``flip_test`` and ``keep_res`` are CenterNet's test modes; ``keep_res``
    needs a ``run`` that takes any input size (the eager model, or an export with
    ``--dynamic``)."""
    meta = getattr(run, 'meta', None)
    if isinstance(meta, dict):  # a Predictor: an export fixed to one size takes only that
        spec = spec.fixed_to(meta.get('input_shape'))
    batch, geometry, picture = prepare(spec, image, flip_test, keep_res)
    return interpret(spec, run(batch), geometry, picture, k, flip_test)
