"""The reference ImageNet evaluation preprocessing, without torch or paddle.vision.

PIL decode, ``convert('RGB')`` (no EXIF rotation), resize of the shorter side to
``floor(img_size / crop_pct)`` with PIL's filter, centre crop, ToTensor, normalise:
pixel for pixel what torchvision's ``Resize / CenterCrop / ToTensor / Normalize`` give.
The OpenCV backend is offered for comparison only; it is not the reference.

Both backends refuse an image whose declared size, or the size the resize would produce,
is out of bounds, before allocating it: such an image is a bad image like a truncated one.
"""
import contextlib
import dataclasses
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..core.errors import ImageReadError, one_line
from ..models.preprocessing import IMAGE_FORMATS, MAX_IMAGE_PIXELS, Preprocessing

BACKENDS = ('pil', 'cv2')
# At most this many pixels after the short-side resize, 192 MiB as RGB: aspect ratios up
# to 1024:1 at the usual 256 px, about 3:1 at the largest (4096 px crop, crop_pct 0.875).
MAX_RESIZED_PIXELS = 2 ** 26


@dataclass(frozen=True)
class Preprocess(Preprocessing):
    """A :class:`~paddle_dla.models.preprocessing.Preprocessing` recipe applied to image files,
    with the image library that decodes and resizes them."""

    backend: str = 'pil'

    @classmethod
    def of(cls, recipe, backend=None, **overrides):
        """Apply ``recipe`` (a weights entry's), with any field overridden."""
        return cls(**{**dataclasses.asdict(recipe), 'backend': backend or 'pil'}
                   ).with_overrides(**overrides)

    def __call__(self, path):
        """``path`` -> normalised float32 CHW array."""
        if not os.path.isfile(path):  # a FIFO or device would block the reader for ever
            raise ImageReadError(f'cannot decode {path}: not a regular file')
        if self.backend == 'cv2':
            pixels = _cv2_resized(path, self.resize, self.interpolation)
        else:
            pixels = _pil_resized(path, self.resize, self.interpolation)
        pixels = _center_crop(pixels, self.img_size)
        chw = pixels.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (chw - mean) / std


def _short_side_size(width, height, size):
    """torchvision's rule: the short side becomes ``size``, the long side is truncated."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _check_decoded_size(path, width, height):
    """Refuse an image by its header, before its pixels are allocated."""
    if width < 1 or height < 1:
        raise ImageReadError(f'cannot decode {path}: it declares {width}x{height} pixels')
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageReadError(f'cannot decode {path}: it declares {width}x{height} pixels, more '
                             f'than the {MAX_IMAGE_PIXELS:,} allowed')


def _resize_target(path, width, height, size):
    """The resized size, refused when it is too large to allocate (an extreme aspect ratio
    turns a tiny file into gigabytes)."""
    target = _short_side_size(width, height, size)
    if target[0] * target[1] > MAX_RESIZED_PIXELS:
        raise ImageReadError(f'cannot resize {path}: {width}x{height} pixels would become '
                             f'{target[0]}x{target[1]}, more than the {MAX_RESIZED_PIXELS:,} '
                             f'allowed')
    return target


@contextlib.contextmanager
def _opened(path):
    """The file opened by Pillow without decoding: only formats whose opening reads just the
    header (an icon file, say, decodes its image when opened), and with Pillow's warnings
    kept off the terminal (sizes are checked here; the bad ones become errors)."""
    from PIL import Image
    Image.init()  # registers every plugin, so that formats= can name them
    with open(path, 'rb') as f, warnings.catch_warnings(record=True):
        warnings.simplefilter('always')
        yield Image.open(f, formats=[n for n in IMAGE_FORMATS if n in Image.OPEN])


def _pil_decoded(path):
    """The image as RGB, its declared size checked before any pixel is decoded."""
    try:
        with _opened(path) as image:
            _check_decoded_size(path, *image.size)
            return image.convert('RGB')
    except ImageReadError:
        raise
    except Exception as exc:  # PIL raises many types for bad files, MemoryError included
        raise ImageReadError(f'cannot decode {path}: {one_line(exc)}') from exc


def _pil_resized(path, size, interpolation):
    from PIL import Image
    filters = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC, 'nearest': Image.NEAREST,
               'lanczos': Image.LANCZOS, 'box': Image.BOX, 'hamming': Image.HAMMING}
    image = _pil_decoded(path)
    target = _resize_target(path, *image.size, size)
    try:
        return np.asarray(image.resize(target, filters[interpolation]), dtype=np.uint8)
    except MemoryError as exc:
        raise ImageReadError(f'cannot resize {path}: {one_line(exc)}') from exc


def _declared_size(path):
    """``(width, height)`` from the file's header, read by Pillow without decoding."""
    try:
        with _opened(path) as image:
            return image.size
    except Exception as exc:
        raise ImageReadError(f'cannot decode {path}: {one_line(exc)}') from exc


def _cv2_resized(path, size, interpolation):
    """OpenCV has no lazy header read, so Pillow checks the declared size first."""
    try:
        import cv2
    except ImportError as exc:
        raise ImageReadError('--backend cv2 needs OpenCV: pip install opencv-python-headless') from exc
    flags = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC,
             'nearest': cv2.INTER_NEAREST, 'lanczos': cv2.INTER_LANCZOS4,
             'box': cv2.INTER_AREA, 'hamming': cv2.INTER_LINEAR}
    _check_decoded_size(path, *_declared_size(path))
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError) as exc:
        raise ImageReadError(f'cannot decode {path}: {one_line(exc)}') from exc
    if image is None:
        raise ImageReadError(f'cannot decode {path}: OpenCV could not read it')
    height, width = image.shape[:2]
    _check_decoded_size(path, width, height)
    target = _resize_target(path, width, height, size)
    try:
        image = cv2.resize(image, target, interpolation=flags[interpolation])
    except (cv2.error, MemoryError) as exc:
        raise ImageReadError(f'cannot resize {path}: {one_line(exc)}') from exc
    return np.ascontiguousarray(image[:, :, ::-1])


def _center_crop(pixels, crop):
    """torchvision's CenterCrop on an HWC array, zero-padding a side shorter than ``crop``."""
    height, width = pixels.shape[:2]
    if height < crop or width < crop:
        pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2),
                                 (0, 0)))
        height, width = pixels.shape[:2]
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return pixels[top:top + crop, left:left + crop]
