"""The reference ImageNet evaluation preprocessing, without torch or paddle.vision.

PIL decode, ``convert('RGB')`` (no EXIF rotation), resize of the shorter side to
``floor(img_size / crop_pct)`` with PIL's filter, centre crop, ToTensor, normalise:
pixel for pixel what torchvision's ``Resize / CenterCrop / ToTensor / Normalize`` give.
The OpenCV backend is offered for comparison only; it is not the reference.
"""
import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np

INTERPOLATIONS = ('bilinear', 'bicubic', 'nearest', 'lanczos', 'box', 'hamming')
BACKENDS = ('pil', 'cv2')


class ImageReadError(ValueError):
    """An image file could not be decoded."""


@dataclass(frozen=True)
class Preprocess:
    img_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = 'bilinear'
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
    backend: str = 'pil'

    @property
    def resize(self):
        return int(math.floor(self.img_size / self.crop_pct))

    @classmethod
    def from_weights(cls, transform, **overrides):
        """The protocol a registry entry was published with, with any field overridden."""
        base = dict(img_size=transform.crop, crop_pct=transform.crop_pct,
                    interpolation=transform.interpolation, mean=transform.mean, std=transform.std)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def __call__(self, path):
        """``path`` -> normalised float32 CHW array."""
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


def _pil_resized(path, size, interpolation):
    from PIL import Image
    filters = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC, 'nearest': Image.NEAREST,
               'lanczos': Image.LANCZOS, 'box': Image.BOX, 'hamming': Image.HAMMING}
    try:
        with open(path, 'rb') as f:
            image = Image.open(f)
            image = image.convert('RGB')
    except Exception as exc:  # PIL raises many types for bad files
        raise ImageReadError(f'cannot decode {path}: {" ".join(str(exc).split())}') from exc
    image = image.resize(_short_side_size(*image.size, size), filters[interpolation])
    return np.asarray(image, dtype=np.uint8)


def _cv2_resized(path, size, interpolation):
    try:
        import cv2
    except ImportError as exc:
        raise ImageReadError('--backend cv2 needs OpenCV: pip install opencv-python-headless') from exc
    flags = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC,
             'nearest': cv2.INTER_NEAREST, 'lanczos': cv2.INTER_LANCZOS4,
             'box': cv2.INTER_AREA, 'hamming': cv2.INTER_LINEAR}
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f'cannot decode {path}: OpenCV could not read it')
    height, width = image.shape[:2]
    image = cv2.resize(image, _short_side_size(width, height, size),
                       interpolation=flags[interpolation])
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
