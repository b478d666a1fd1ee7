"""How images are prepared for a model: the one home of the evaluation recipe.

Each weights entry of the registry carries one :class:`Preprocessing`; the evaluation
harness, ``predict``, the export metadata and fine-tuning all read it from there.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ('bilinear', 'bicubic', 'nearest', 'lanczos', 'box', 'hamming')
# The image formats read (what cameras and datasets write), by Pillow's names.
IMAGE_FORMATS = ('JPEG', 'PNG', 'BMP', 'GIF', 'WEBP', 'TIFF', 'PPM')
# At most this many decoded pixels: 8192 x 8192, 192 MiB as RGB, room for any camera
# photograph and below the 179M pixels at which Pillow itself refuses a file.
MAX_IMAGE_PIXELS = 2 ** 26
# The input sizes a model may be built, exported or evaluated at: DLA downsamples 32x, and
# 4096 px keeps one image's activations within a few GiB.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 4096
INPUT_SIZE_RANGE = f'{MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}'


@dataclass(frozen=True)
class Preprocessing:
    """The reference ImageNet protocol: resize the short side to ``floor(img_size /
    crop_pct)`` with ``interpolation``, centre-crop ``img_size``, normalise."""

    img_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = 'bilinear'
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    @property
    def resize(self):
        return int(math.floor(self.img_size / self.crop_pct))

    def with_overrides(self, **overrides):
        """A copy with every override that is not None applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self):
        """Plain JSON-ready values (export metadata, results files)."""
        return {'img_size': self.img_size, 'crop_pct': self.crop_pct,
                'interpolation': self.interpolation, 'mean': list(self.mean),
                'std': list(self.std)}

    @classmethod
    def from_dict(cls, data):
        """The inverse of :meth:`as_dict`; unknown keys are refused."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f'unknown preprocessing fields: {", ".join(sorted(unknown))}')
        values = dict(data)
        for key in ('mean', 'std'):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)


DEFAULT = Preprocessing()
