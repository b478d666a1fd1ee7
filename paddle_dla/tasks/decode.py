"""From the raw maps of the dense networks (CenterNet, FairMOT, DLA segmentation) to boxes,
scores, identity embeddings and class maps, in NumPy only.

Detection follows CenterNet's ``ctdet_decode`` and FairMOT's ``mot_decode``: a peak is a
cell equal to the 3x3 max-pool of the sigmoid heatmap, the K best peaks over all classes
are kept, and the offset, size and identity maps are read at those cells. Boxes come out
in output-map cells; the input's :class:`Affine` maps them onto the image, as the
reference's ``post_process`` does.
"""
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..core.errors import PaddleDLAError
from ..models.dense_variants import DEFAULT_TOP_K


class DecodeError(PaddleDLAError, ValueError):
    """Network outputs that cannot be decoded as asked (a missing map, a wrong shape)."""


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow for large negative logits; keeps the dtype."""
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    x = x.astype(np.float64)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(dtype)


def max_pool3x3(heat):
    """3x3 max-pool, stride 1, padding 1 (the padding never wins), over the last two axes."""
    padded = np.pad(heat, [(0, 0)] * (heat.ndim - 2) + [(1, 1), (1, 1)],
                    constant_values=-np.inf)
    rows = np.maximum(np.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])
    return np.maximum(np.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def heatmap_peaks(heat, k=DEFAULT_TOP_K):
    """The ``k`` best local maxima of a sigmoid heatmap (N, C, H, W), over all classes.

    Returns ``(scores, classes, ys, xs)``, each (N, k), best first. Cells that are not a
    peak count as score 0, as in CenterNet, so with fewer than ``k`` peaks the tail is made
    of zero-score cells. CenterNet's per-class then global top-k selects the same set (the
    global top k holds at most k cells of any class); only exact ties may be broken
    differently. ``k`` is capped at C * H * W.
    """
    heat = _maps(heat, 'heatmap')
    n, c, h, w = heat.shape
    flat = np.where(heat == max_pool3x3(heat), heat, 0).reshape(n, -1)
    k = min(int(k), flat.shape[1])
    if k < 1:
        raise DecodeError(f'k must be at least 1, not {k}')
    chosen = np.sort(np.argpartition(-flat, k - 1, axis=1)[:, :k], axis=1)
    order = np.argsort(-np.take_along_axis(flat, chosen, axis=1), axis=1, kind='stable')
    index = np.take_along_axis(chosen, order, axis=1)
    scores = np.take_along_axis(flat, index, axis=1)
    classes, cell = np.divmod(index, h * w)
    ys, xs = np.divmod(cell, w)
    return scores, classes.astype(np.int64), ys.astype(np.int64), xs.astype(np.int64)


def affine_matrix(center, scale, output_wh, inverse=False):
    """CenterNet's ``get_affine_transform`` without rotation, as a 2x3 float64 matrix: the
    source square of side ``scale[0]`` about ``center`` onto an output ``output_wh`` wide,
    both axes by ``output_w / scale[0]``, ``center`` landing on the output's middle.

    Like the reference, the three point pairs are built in float32 and the matrix solved
    from them in float64 (``cv2.getAffineTransform``'s arithmetic); ``inverse`` maps
    output points back to the source. Pixel indices are mapped, not pixel edges."""
    half = np.float32(scale[0]) * np.float32(0.5)
    c = np.asarray(center, np.float32)
    out_w, out_h = (np.float32(v) for v in output_wh)
    mid = np.array([out_w * np.float32(0.5), out_h * np.float32(0.5)], np.float32)
    up = np.array([0, out_w * np.float32(-0.5)], np.float32)
    # Two points along the vertical axis, and a third a quarter turn from them.
    src = np.stack([c, c + np.array([0, -half], np.float32), c + np.array([-half, -half],
                                                                        np.float32)])
    dst = np.stack([mid, mid + up, mid + np.array([up[1], up[1]], np.float32)])
    if inverse:
        src, dst = dst, src
    # Solve [x y 1] @ M.T = [x' y'] for the three pairs.
    points = np.concatenate([src.astype(np.float64), np.ones((3, 1))], axis=1)
    return np.linalg.solve(points, dst.astype(np.float64)).T


@dataclass(frozen=True)
class Affine:
    """CenterNet's test-time geometry: the image warped by :func:`affine_matrix` with
    ``center`` and ``scale`` into an ``input_w`` x ``input_h`` input. Boxes come back through
    the inverse at the output map's size, unclipped (as the reference's results are)."""

    center: tuple
    scale: tuple
    image_h: int
    image_w: int
    input_h: int
    input_w: int

    @property
    def input_matrix(self):
        return affine_matrix(self.center, self.scale, (self.input_w, self.input_h))

    def to_image(self, boxes, stride=4):
        """Boxes (..., 4) in output-map cells -> original image pixels (not clipped)."""
        out_wh = (self.input_w // stride, self.input_h // stride)
        back = affine_matrix(self.center, self.scale, out_wh, inverse=True)
        boxes = np.asarray(boxes, np.float32)
        corners = boxes.reshape(-1, 2).astype(np.float64)
        mapped = corners @ back[:, :2].T + back[:, 2]
        return mapped.reshape(boxes.shape).astype(np.float32)


def centernet_affine(image_hw, input_hw=(512, 512), keep_res=False, pad=31):
    """The :class:`Affine` CenterNet's ``pre_process`` uses for an image: by default the
    centre ``(w / 2, h / 2)`` and scale ``max(h, w)`` into ``input_hw``; with ``keep_res``
    the image at its own resolution in an input of ``(h | pad) + 1`` x ``(w | pad) + 1``,
    centred on ``(w // 2, h // 2)``."""
    h, w = _size(image_hw, 'image')
    if keep_res:
        in_h, in_w = (h | pad) + 1, (w | pad) + 1
        return Affine((float(w // 2), float(h // 2)), (float(in_w), float(in_h)), h, w,
                      in_h, in_w)
    in_h, in_w = _size(input_hw, 'input')
    side = float(max(h, w))
    return Affine((w / 2.0, h / 2.0), (side, side), h, w, in_h, in_w)


def fairmot_affine(image_hw, input_hw=(608, 1088)):
    """The :class:`Affine` FairMOT's tracker maps its letterboxed input's boxes back by:
    centre ``(w / 2, h / 2)``, scale ``max(W_in / H_in * h, w)``."""
    h, w = _size(image_hw, 'image')
    in_h, in_w = _size(input_hw, 'input')
    side = max(float(in_w) / float(in_h) * h, float(w))
    return Affine((w / 2.0, h / 2.0), (side, side), h, w, in_h, in_w)


@dataclass(frozen=True)
class Detections:
    """One image's detections, best first: boxes (k, 4) x1 y1 x2 y2, scores (k,),
    classes (k,), and FairMOT's identity embeddings (k, D), L2-normalised, or None."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    embeddings: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.scores)

    def above(self, threshold):
        """The detections scoring at least ``threshold``."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep],
                          None if self.embeddings is None else self.embeddings[keep])

    def to_image(self, geometry, stride=4):
        """The boxes mapped from output-map cells to the original image's pixels."""
        return replace(self, boxes=geometry.to_image(self.boxes, stride))


def flip_merged(outputs):
    """CenterNet's flip test: batch items ``2i`` and ``2i + 1`` are an image and its mirror
    image. Returns ``(heat, outputs)`` for the ``N / 2`` images: the sigmoid heatmap and
    'wh' averaged with the mirror's maps flipped back, every other map ('reg') from the
    image alone."""
    hm = _maps(outputs['hm'], 'hm')
    if hm.shape[0] % 2:
        raise DecodeError(f'a flip test needs image and mirror pairs, not a batch of '
                          f'{hm.shape[0]}')
    heat = sigmoid(hm)
    heat = (heat[0::2] + heat[1::2, ..., ::-1]) / np.float32(2)
    merged = {name: _maps(value, name)[0::2] for name, value in outputs.items()}
    wh = _maps(outputs['wh'], 'wh')
    if wh.shape[1] != 2:
        raise DecodeError(f"a flip test averages a width and height 'wh' (2 channels), not "
                          f"{wh.shape[1]} channels")
    merged['wh'] = (wh[0::2] + wh[1::2, ..., ::-1]) / np.asarray(2, wh.dtype)
    return heat, merged


def decode_detections(outputs, k=DEFAULT_TOP_K, flip_test=False):
    """CenterNet / FairMOT outputs {'hm', 'wh'[, 'reg'][, 'id']} (N, C, H, W), as the
    network returns them (hm as logits) -> a list of :class:`Detections`, one per image,
    boxes in output-map cells. With ``flip_test`` the batch holds image and mirror pairs
    (:func:`flip_merged`), and one list item comes out per pair.

    'wh' with 2 channels is a width and height about the centre; with 4 it is FairMOT's
    distances to the left, top, right and bottom. Without 'reg' the centre is the middle of
    the cell (+0.5), as CenterNet decodes a model trained without offsets.
    """
    for name in ('hm', 'wh'):
        if name not in outputs:
            raise DecodeError(f"the outputs have no '{name}' map (they have: "
                              f"{', '.join(sorted(outputs)) or 'none'})")
    if flip_test:
        heat, outputs = flip_merged(outputs)
    else:
        heat = sigmoid(_maps(outputs['hm'], 'hm'))
    scores, classes, ys, xs = heatmap_peaks(heat, k)
    wh = _gathered(outputs, 'wh', heat.shape, ys, xs)
    if wh.shape[-1] not in (2, 4):
        raise DecodeError(f"'wh' has {wh.shape[-1]} channels; 2 (width, height) or 4 "
                          f"(left, top, right, bottom) are decoded")
    if 'reg' in outputs:
        reg = _gathered(outputs, 'reg', heat.shape, ys, xs)
        cx, cy = xs + reg[..., 0], ys + reg[..., 1]
    else:
        cx, cy = xs + 0.5, ys + 0.5
    boxes = _boxes(cx, cy, wh)
    embeddings = _embeddings(outputs, heat.shape, ys, xs) if 'id' in outputs else None
    return [Detections(boxes[i], scores[i].astype(np.float32), classes[i],
                       None if embeddings is None else embeddings[i])
            for i in range(len(boxes))]


def _boxes(cx, cy, wh):
    if wh.shape[-1] == 4:
        left, top, right, bottom = np.moveaxis(wh, -1, 0)
    else:
        left = right = wh[..., 0] / 2
        top = bottom = wh[..., 1] / 2
    return np.stack([cx - left, cy - top, cx + right, cy + bottom], -1).astype(np.float32)


def _embeddings(outputs, heat_shape, ys, xs):
    """FairMOT normalises the id map over channels, then reads it at the peaks; the norm of
    one cell's vector is all that matters, so normalising after reading is the same."""
    ids = _gathered(outputs, 'id', heat_shape, ys, xs).astype(np.float64)
    norms = np.maximum(np.linalg.norm(ids, axis=-1, keepdims=True), 1e-12)  # F.normalize
    return (ids / norms).astype(np.float32)


def _gathered(outputs, name, heat_shape, ys, xs):
    """Map ``name`` (N, D, H, W) read at the cells (ys, xs) (N, k) -> (N, k, D)."""
    maps = _maps(outputs[name], name)
    n, _, h, w = heat_shape
    if maps.shape[0] != n or maps.shape[2:] != (h, w):
        raise DecodeError(f"'{name}' has shape {maps.shape}; the heatmap's batch and size "
                          f"are {n} and {h}x{w}")
    batch = np.arange(n)[:, None]
    return maps[batch, :, ys, xs]


def segment(logprobs):
    """Segmentation scores (N, C, H, W) -> per-pixel classes (N, H, W)."""
    return _maps(logprobs, 'segmentation scores').argmax(axis=1).astype(np.int64)


def _maps(array, name):
    array = np.asarray(array)
    if array.ndim != 4:
        raise DecodeError(f'{name} must be (N, C, H, W), not of shape {array.shape}')
    return array


def _size(hw, what):
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise DecodeError(f'the {what} size must be positive, not {h}x{w}')
    return h, w
