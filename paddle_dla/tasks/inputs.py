"""Network inputs for the dense tasks, each with the geometry that maps the outputs back
onto the original image: CenterNet's affine warp (OpenCV, as the reference runs it), a
letterbox (FairMOT's, OpenCV too) and the image at its own size or stretched
(segmentation) with Pillow.

Pillow's images are decoded as the evaluation does (``convert('RGB')``, no EXIF rotation);
OpenCV's as ``cv2.imread`` does. Either way the file and its declared size are checked
before any pixel is decoded, and what is drawn on later is the picture the network saw.
"""
import contextlib
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..core.errors import ImageReadError, one_line
from ..models.preprocessing import IMAGE_FORMATS, MAX_IMAGE_PIXELS
from .decode import centernet_affine, fairmot_affine

CHANNEL_ORDERS = ('rgb', 'bgr')

def read_image(image):
    """A PIL image (converted to RGB) or the path of one -> an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == 'RGB' else image.convert('RGB')
    path = os.fspath(image)
    with _checked_open(path) as opened:
        try:
            return opened.convert('RGB')
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
            raise ImageReadError(f'cannot decode {path}: {one_line(exc)}') from exc


@contextlib.contextmanager
def _checked_open(path):
    """The image at ``path`` opened lazily by Pillow, once it is known to be a regular file
    of a format we read that declares at most ``MAX_IMAGE_PIXELS`` pixels."""
    if not os.path.isfile(path):  # missing, a folder, or a FIFO that would block for ever
        raise ImageReadError(f'cannot decode {path}: '
                             f'{"not a regular file" if os.path.exists(path) else "no such file"}')
    try:
        Image.init()  # registers every plugin, so that formats= can name them
        with open(path, 'rb') as f, warnings.catch_warnings(record=True):
            warnings.simplefilter('always')
            opened = Image.open(f, formats=[n for n in IMAGE_FORMATS if n in Image.OPEN])
            width, height = opened.size
            if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
                raise ImageReadError(f'cannot decode {path}: it declares {width}x{height} '
                                     f'pixels (at most {MAX_IMAGE_PIXELS:,} are read)')
            yield opened
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types for bad files, MemoryError included
        raise ImageReadError(f'cannot decode {path}: {one_line(exc)}') from exc


def image_size(path):
    """(width, height) an image file declares, read from its header and checked as
    :func:`read_image` checks it; no pixel is decoded."""
    with _checked_open(os.fspath(path)) as opened:
        return opened.size


def read_bgr(image):
    """An image as CenterNet and FairMOT read it, ``cv2.imread``'s way: an 8-bit BGR array
    (H, W, 3); a grayscale file becomes three equal channels, 16-bit samples are reduced
    to 8 bits and EXIF orientation is applied, as OpenCV does. Accepts a path (checked as
    :func:`read_image` checks it before any pixel is decoded), a PIL image, or an 8-bit
    BGR array (taken as is)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'an image array is 8-bit BGR (H, W, 3), not {image.dtype} '
                             f'{image.shape}')
        return image
    if isinstance(image, Image.Image):
        return np.ascontiguousarray(np.asarray(image.convert('RGB'))[:, :, ::-1])
    cv2 = opencv()
    path = os.fspath(image)
    with _checked_open(path):
        with open(path, 'rb') as f:
            data = np.frombuffer(f.read(), np.uint8)
    try:
        pixels = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageReadError(f'cannot decode {path}: {one_line(exc)}') from None
    if pixels is None:
        raise ImageReadError(f'cannot decode {path}: OpenCV could not read it')
    return pixels


def bgr_to_pil(pixels):
    """An 8-bit BGR array -> the RGB PIL image drawings are made on."""
    return Image.fromarray(np.ascontiguousarray(pixels[:, :, ::-1]), 'RGB')


def affine_image(pixels, input_hw, mean, std, keep_res=False):
    """An 8-bit BGR array -> (float32 CHW input, :class:`~paddle_dla.tasks.decode.Affine`),
    as CenterNet's ``pre_process`` makes it: ``cv2.warpAffine`` with bilinear
    interpolation and a black border on the 8-bit image, then ``(pixel / 255 - mean) /
    std`` in BGR order (float64, then float32)."""
    cv2 = opencv()
    geometry = centernet_affine(pixels.shape[:2], input_hw, keep_res)
    warped = cv2.warpAffine(pixels, geometry.input_matrix, (geometry.input_w, geometry.input_h),
                            flags=cv2.INTER_LINEAR)
    mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
    std = np.asarray(std, np.float32).reshape(1, 1, 3)
    normalised = ((warped / 255.0 - mean) / std).astype(np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)), geometry


def opencv():
    try:
        import cv2
    except ImportError:
        raise ImportError('CenterNet\'s and FairMOT\'s image pipeline is OpenCV\'s: pip install '
                          'opencv-python-headless') from None
    return cv2


def letterbox_image(pixels, input_hw, mean, std, channel_order='rgb', fill=0.5):
    """An 8-bit BGR array -> (float32 CHW input, :class:`~paddle_dla.tasks.decode.Affine`),
    as FairMOT's ``letterbox`` makes it: one scale ``min(H_in / h, W_in / w)``, the
    rounded size resized with ``cv2.INTER_AREA``, bordered by ``cv2.copyMakeBorder`` with
    ``fill`` (0-1; FairMOT's 127.5 grey is 0.5) split as FairMOT rounds it, then
    ``(pixel / 255 - mean) / std`` in ``channel_order``. Boxes come back through the affine
    FairMOT's ``post_process`` uses: centre ``(w / 2, h / 2)``, scale
    ``max(W_in / H_in * h, w)``."""
    cv2 = opencv()
    geometry = fairmot_affine(pixels.shape[:2], input_hw)
    height, width = pixels.shape[:2]
    in_h, in_w = geometry.input_h, geometry.input_w
    ratio = min(float(in_h) / height, float(in_w) / width)
    size = (round(width * ratio), round(height * ratio))
    pad_w, pad_h = (in_w - size[0]) / 2, (in_h - size[1]) / 2
    resized = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    padded = cv2.copyMakeBorder(resized, round(pad_h - 0.1), round(pad_h + 0.1),
                                round(pad_w - 0.1), round(pad_w + 0.1), cv2.BORDER_CONSTANT,
                                value=(255.0 * fill,) * 3)
    rgb = padded[:, :, ::-1].astype(np.float32) / np.float32(255)
    return _normalised(rgb, mean, std, channel_order), geometry


@dataclass(frozen=True)
class Stretch:
    """An image resized to the whole input, aspect ratio ignored (segmentation)."""

    image_h: int
    image_w: int
    input_h: int
    input_w: int

    def to_image(self, classes):
        """A class map (H, W) of any size -> the original image's size."""
        return class_map_to_image(classes, (self.image_h, self.image_w))


def stretch_image(image, input_hw, mean, std, channel_order='rgb'):
    """An image (PIL or path) -> (float32 CHW input, :class:`Stretch`): resized to
    ``input_hw`` with Pillow's bilinear filter, normalised as in :func:`letterbox_image`."""
    image = read_image(image)
    width, height = image.size
    in_h, in_w = (int(v) for v in input_hw)
    resized = image.resize((in_w, in_h), Image.BILINEAR)
    return _normalised(_unit(resized), mean, std, channel_order), Stretch(height, width, in_h, in_w)


@dataclass(frozen=True)
class Padded:
    """An image at its own resolution, padded at the bottom and right up to the network's
    multiple (segmentation, as ``segment.py`` tests it at full resolution)."""

    image_h: int
    image_w: int
    input_h: int
    input_w: int

    def to_image(self, classes):
        """A class map at the input's size -> the image's (the padding cropped off)."""
        classes = np.asarray(classes)
        if classes.shape != (self.input_h, self.input_w):
            raise ValueError(f'a class map of {classes.shape} for an input of '
                             f'{(self.input_h, self.input_w)}')
        return classes[:self.image_h, :self.image_w]


def native_image(image, mean, std, channel_order='rgb', multiple=32):
    """An image (PIL or path) -> (float32 CHW input, :class:`Padded`): at its own size,
    normalised as ``segment.py`` does (``pixel / 255``, then ``(x - mean) / std`` in float32),
    and padded with zeros (the mean colour) at the bottom and right to a multiple of
    ``multiple``; an image whose sides are multiples already is exactly segment.py's input."""
    image = read_image(image)
    width, height = image.size
    in_h, in_w = (-(-side // multiple) * multiple for side in (height, width))
    array = _normalised(_unit(image), mean, std, channel_order)
    padded = np.zeros((3, in_h, in_w), np.float32)
    padded[:, :height, :width] = array
    return padded, Padded(height, width, in_h, in_w)


def class_map_to_image(classes_hw, image_hw):
    """Nearest-neighbour resize of a class map (H, W) to ``image_hw``: each image pixel
    takes the class of the map cell its centre falls in."""
    classes = np.asarray(classes_hw)
    if classes.ndim != 2:
        raise ValueError(f'a class map is (H, W), not of shape {classes.shape}')
    (h, w), (map_h, map_w) = image_hw, classes.shape
    rows = np.minimum(((np.arange(h) + 0.5) * map_h / h).astype(np.int64), map_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * map_w / w).astype(np.int64), map_w - 1)
    return classes[rows[:, None], cols[None, :]]


def _unit(image):
    """An RGB PIL image -> float32 HWC in [0, 1]."""
    return np.asarray(image, np.float32) / np.float32(255)


def _normalised(pixels, mean, std, channel_order):
    """HWC RGB in [0, 1] -> CHW ``(pixel - mean) / std`` in ``channel_order``."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, "
                         f"not {channel_order!r}")
    if channel_order == 'bgr':
        pixels = pixels[:, :, ::-1]
    mean = np.asarray(mean, np.float32).reshape(1, 1, -1)
    std = np.asarray(std, np.float32).reshape(1, 1, -1)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))
