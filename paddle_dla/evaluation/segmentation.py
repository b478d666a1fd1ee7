"""Cityscapes semantic segmentation, scored as ucbdrive/dla's ``segment.py`` scores it: one
confusion matrix (rows: label, columns: prediction) summed over every labelled pixel of the
val set, per-class IoU = diag / (row sum + column sum - diag), mIoU = their NaN-mean.

Two layouts of the val set are recognised:

- ``segment.py``'s: ``val_images.txt`` and ``val_labels.txt`` in the data folder, one path
  per line relative to it;
- the official download: ``leftImg8bit/val/<city>/<stem>_leftImg8bit.png`` labelled by
  ``gtFine/val/<city>/<stem>_gtFine_labelTrainIds.png`` (which cityscapesScripts'
  ``createTrainIdLabelImgs`` makes; the download holds only ``labelIds``).
"""
import os
import warnings

import numpy as np
from PIL import Image

from ..core.errors import PaddleDLAError, one_line, printable
from ..core.textfiles import read_text_file
from ..models.dense_variants import CITYSCAPES_CLASSES
from ..models.preprocessing import IMAGE_FORMATS

NUM_CLASSES = len(CITYSCAPES_CLASSES)
IGNORE_LABEL = 255
LIST_FILES = ('val_images.txt', 'val_labels.txt')
IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtFine_labelTrainIds.png'
# Cityscapes' labels are 2048x1024; a file declaring far more is not decoded.
MAX_LABEL_SIDE = 8192
# Lossless formats only: a JPEG's artefacts would turn train ids into other classes.
LABEL_FORMATS = ('PNG', 'BMP', 'TIFF')
# 500 val images take some 40 KiB of list; a far larger file is not a list.
MAX_LIST_FILE_BYTES = 16 << 20
_LAYOUTS = (f'segment.py\'s {" and ".join(LIST_FILES)}, or the Cityscapes download\'s '
            f'leftImg8bit/val/<city>/*{IMAGE_SUFFIX} with gtFine/val/<city>/*{LABEL_SUFFIX}')
_CREATE_TRAIN_IDS = ('run cityscapesScripts\' createTrainIdLabelImgs (pip install '
                     'cityscapesscripts; CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs)')


class SegmentationDataError(PaddleDLAError, ValueError):
    """The val set, a label file or a prediction cannot be scored; the message names the file."""


# -- the val set -----------------------------------------------------------------------------

def find_cityscapes(root):
    """``[(image_path, label_path)]``, sorted, absolute: from segment.py's list files if the
    folder holds them, else from the official ``leftImg8bit``/``gtFine`` folders."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise SegmentationDataError(
            f'{printable(root)} is not a folder' if os.path.exists(root)
            else f'no such data folder: {printable(root)}')
    lists = [os.path.join(root, name) for name in LIST_FILES]
    if any(os.path.exists(path) for path in lists):
        pairs = _from_lists(root, *lists)
    else:
        pairs = _from_official(root)
    if not pairs:
        raise SegmentationDataError(f'{printable(root)} holds no val images: expected {_LAYOUTS}')
    return sorted(pairs)


def _from_lists(root, images_list, labels_list):
    """segment.py's layout: the n-th image is labelled by the n-th label."""
    images, labels = _read_list(images_list), _read_list(labels_list)
    if len(images) != len(labels):
        raise SegmentationDataError(
            f'{printable(labels_list)} lists {len(labels)} labels but '
            f'{os.path.basename(images_list)} lists {len(images)} images: one label per image, '
            f'in the same order')
    pairs = [tuple(os.path.abspath(os.path.join(root, name)) for name in pair)
             for pair in zip(images, labels)]
    for pair in pairs:
        for path, listed_in in zip(pair, (images_list, labels_list)):
            if not os.path.isfile(path):
                raise SegmentationDataError(
                    f'{printable(path)}, listed in {os.path.basename(listed_in)}, '
                    f'{"is not a regular file" if os.path.exists(path) else "does not exist"}')
    return pairs


def _read_list(path):
    """The non-blank lines of a list file, stripped as segment.py strips them."""
    text = read_text_file(path, MAX_LIST_FILE_BYTES, SegmentationDataError, 'list file',
                          'it is not a list of val files',
                          missing_hint=f' (segment.py\'s layout needs both '
                                       f'{" and ".join(LIST_FILES)})')
    return [line.strip() for line in text.splitlines() if line.strip()]


def _from_official(root):
    """The official layout; an image without its train-id label is an error, not skipped:
    a partial val set would give a different mIoU."""
    image_dir = os.path.join(root, 'leftImg8bit', 'val')
    label_dir = os.path.join(root, 'gtFine', 'val')
    if not os.path.isdir(image_dir):
        return []
    pairs, missing = [], []
    for city in sorted(_listdir(image_dir)):
        folder = os.path.join(image_dir, city)
        if not os.path.isdir(folder):
            continue
        for name in sorted(_listdir(folder)):
            image = os.path.join(folder, name)
            if not name.endswith(IMAGE_SUFFIX) or not os.path.isfile(image):
                continue
            label = os.path.join(label_dir, city, name[:-len(IMAGE_SUFFIX)] + LABEL_SUFFIX)
            (pairs if os.path.isfile(label) else missing).append((image, label))
    if missing:
        image, label = missing[0]
        some = (f'{len(missing)} of {len(pairs) + len(missing)} images have no train-id label; '
                f'the first: ' if len(missing) > 1 else '')
        raise SegmentationDataError(
            f'{some}no label file {printable(label)} for {printable(os.path.basename(image))}: '
            + _CREATE_TRAIN_IDS.format(root=printable(root)))
    return pairs


def _listdir(folder):
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise SegmentationDataError(
            f'cannot read folder {printable(folder)}: {exc.strerror or exc}') from None


# -- files -----------------------------------------------------------------------------------

def image_size(path):
    """``(width, height)`` of an image from its header, without decoding a pixel."""
    path = os.fspath(path)
    shown = printable(path)
    if not os.path.isfile(path):
        raise SegmentationDataError(f'cannot read image {shown}: {_not_a_file(path)}')
    try:
        Image.init()
        with open(path, 'rb') as f, warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the size is all that is read
            return Image.open(f, formats=[n for n in IMAGE_FORMATS if n in Image.OPEN]).size
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise SegmentationDataError(f'cannot read image {shown}: {one_line(exc)}') from exc


def check_label_sizes(pairs):
    """Every label's declared size against its image's, from the file headers alone: a val
    set with a wrong label fails before the model runs on any image."""
    for image, label in pairs:
        want, got = image_size(image), image_size(label)
        if want != got:
            raise SegmentationDataError(f'label {printable(label)} is {got[0]}x{got[1]} but its '
                                        f'image is {want[0]}x{want[1]}: a label has its '
                                        f'image\'s size')


def read_label(path, image_size, *, num_classes=NUM_CLASSES, ignore=IGNORE_LABEL):
    """A label file -> uint8 array (H, W) of train ids, refused (naming the file) unless it is
    a single-channel map of ``image_size`` (W, H) holding only 0..num_classes-1 and
    ``ignore``: a wrong label file would otherwise score quietly as a bad model."""
    path = os.fspath(path)
    shown = printable(path)
    if not os.path.isfile(path):  # missing, a folder, or a FIFO that would block for ever
        raise SegmentationDataError(f'cannot read label {shown}: {_not_a_file(path)}')
    try:
        Image.init()
        with open(path, 'rb') as f, warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the declared size is checked below
            opened = Image.open(f, formats=[n for n in LABEL_FORMATS if n in Image.OPEN])
            _check_header(opened, shown, tuple(int(v) for v in image_size))
            opened.load()
            values = np.asarray(opened)
    except SegmentationDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types, MemoryError included
        raise SegmentationDataError(f'cannot read label {shown}: {one_line(exc)}') from exc
    if values.ndim != 2:
        raise SegmentationDataError(f'label {shown} decodes to shape {values.shape}, not (H, W)')
    valid = ((values >= 0) & (values < num_classes)) | (values == ignore)
    if not valid.all():
        bad = ', '.join(str(v) for v in np.unique(values[~valid])[:5].tolist())
        raise SegmentationDataError(
            f'label {shown} holds values ({bad}) other than train ids 0..{num_classes - 1} and '
            f'the ignore label {ignore}: use the *{LABEL_SUFFIX} files, not *_labelIds.png')
    return values.astype(np.uint8, copy=False) if 0 <= ignore < 256 else values


def _not_a_file(path):
    return 'not a regular file' if os.path.exists(path) else 'no such file'


def _check_header(opened, shown, expected):
    """Refuse a label by its header alone: too large, another size than its image's, or
    not one channel of integers."""
    width, height = opened.size
    if not (0 < width <= MAX_LABEL_SIDE and 0 < height <= MAX_LABEL_SIDE):
        raise SegmentationDataError(f'label {shown} declares {width}x{height} pixels (at most '
                                    f'{MAX_LABEL_SIDE} a side are read)')
    if (width, height) != expected:
        raise SegmentationDataError(f'label {shown} is {width}x{height} but its image is '
                                    f'{expected[0]}x{expected[1]}: a label has its image\'s size')
    bands = opened.getbands()
    if len(bands) != 1:
        raise SegmentationDataError(
            f'label {shown} has {len(bands)} channels ({opened.mode}): a label is one channel '
            f'of train ids (*{LABEL_SUFFIX}, not *_color.png)')
    if not (opened.mode in ('L', 'P', 'I') or opened.mode.startswith('I;')):
        raise SegmentationDataError(f'label {shown} is of mode {opened.mode}, not a map of '
                                    f'integer train ids (mode L, P or I)')


# -- scoring ---------------------------------------------------------------------------------

class ConfusionMatrix:
    """Pixel counts ``hist[label, prediction]`` as segment.py's ``fast_hist`` sums them; the
    matrices of shards add up to the matrix of the whole set."""

    def __init__(self, num_classes=NUM_CLASSES, ignore=IGNORE_LABEL):
        if 0 <= ignore < num_classes:
            raise ValueError(f'the ignore label {ignore} is one of the {num_classes} classes')
        self.num_classes = int(num_classes)
        self.ignore = ignore
        self.hist = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, label):
        """Count one image's pixels; those labelled ``ignore`` are skipped."""
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape:
            raise ValueError(f'the prediction is of shape {pred.shape}, its label of {label.shape}')
        for name, array in (('prediction', pred), ('label', label)):
            if array.dtype.kind not in 'iub':
                raise ValueError(f'a {name} holds integer class ids, not {array.dtype}')
        n = self.num_classes
        keep = label != self.ignore
        label, pred = label[keep].astype(np.int64), pred[keep].astype(np.int64)
        if label.size and (label.min() < 0 or label.max() >= n):
            raise ValueError(f'label values outside 0..{n - 1} that are not the ignore label '
                             f'{self.ignore}')
        if pred.size and (pred.min() < 0 or pred.max() >= n):
            bad = pred[(pred < 0) | (pred >= n)][0]
            raise ValueError(f'the prediction holds class {bad}, outside 0..{n - 1}')
        self.hist += np.bincount(n * label + pred, minlength=n * n).reshape(n, n)
        return self

    def __add__(self, other):
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        if (other.num_classes, other.ignore) != (self.num_classes, self.ignore):
            raise ValueError(f'cannot add a matrix of {other.num_classes} classes (ignore '
                             f'{other.ignore}) to one of {self.num_classes} (ignore {self.ignore})')
        out = ConfusionMatrix(self.num_classes, self.ignore)
        out.hist = self.hist + other.hist
        return out

    @classmethod
    def merge(cls, matrices):
        """The matrix of a sharded run: the sum of the shards' matrices."""
        matrices = list(matrices)
        if not matrices:
            return cls()
        out = matrices[0] + cls(matrices[0].num_classes, matrices[0].ignore)
        for matrix in matrices[1:]:
            out = out + matrix
        return out

    @property
    def pixels(self):
        """Labelled pixels counted."""
        return int(self.hist.sum())

    def iou(self):
        """Per-class IoU in [0, 1]; NaN for a class neither labelled nor predicted."""
        diag = np.diag(self.hist)
        with np.errstate(divide='ignore', invalid='ignore'):
            return diag / (self.hist.sum(1) + self.hist.sum(0) - diag)

    def miou(self):
        """The mean IoU of the classes seen (segment.py's ``nanmean``); NaN if none was."""
        iou = self.iou()
        return float(np.nanmean(iou)) if not np.isnan(iou).all() else float('nan')

    def pixel_accuracy(self):
        """The share of labelled pixels predicted right; NaN if none was counted."""
        total = self.pixels
        return float(np.diag(self.hist).sum() / total) if total else float('nan')

    def as_dict(self, class_names=None):
        """Percentages for a report: ``mIoU``, ``pixel_accuracy`` and per-class ``IoU`` (None
        where undefined, so that the dict is valid JSON)."""
        names = _class_names(self, class_names)
        return {'mIoU': _percent(self.miou()),
                'pixel_accuracy': _percent(self.pixel_accuracy()),
                'IoU': {name: _percent(v) for name, v in zip(names, self.iou().tolist())}}


def _percent(value):
    return None if np.isnan(value) else float(value) * 100


def _class_names(matrix, class_names):
    if class_names is None:
        class_names = CITYSCAPES_CLASSES if matrix.num_classes == NUM_CLASSES else \
            [str(i) for i in range(matrix.num_classes)]
    names = [str(name) for name in class_names]
    if len(names) != matrix.num_classes:
        raise ValueError(f'{len(names)} class names for {matrix.num_classes} classes')
    return names


def format_iou_table(matrix, class_names=None):
    """Per-class IoU (%) and the mIoU, as a plain text table."""
    names = _class_names(matrix, class_names)
    width = max(len('class'), len('mIoU'), *(len(printable(n)) for n in names))
    shown = matrix.as_dict(names)
    lines = [f'{"class":<{width}}  {"IoU %":>6}']
    lines += [f'{printable(name):<{width}}  {_cell(shown["IoU"][name])}' for name in names]
    lines += ['-' * (width + 8), f'{"mIoU":<{width}}  {_cell(shown["mIoU"])}']
    return '\n'.join(lines)


def _cell(value):
    return f'{"n/a":>6}' if value is None else f'{value:6.2f}'


def evaluate_segmentation(segment, pairs, progress=None, *, num_classes=NUM_CLASSES,
                          ignore=IGNORE_LABEL):
    """Score ``segment(image_path)`` -> class map (H, W) at the image's size over ``pairs``
    of (image, label) paths. Each label is checked before the model runs on its image, so
    that a broken val set fails at once rather than after hours of inference."""
    matrix = ConfusionMatrix(num_classes, ignore)
    for image, label_path in pairs:
        label = read_label(label_path, image_size(image), num_classes=num_classes, ignore=ignore)
        pred = np.asarray(segment(image))
        if pred.shape != label.shape:
            raise SegmentationDataError(
                f'the prediction for {printable(image)} is of shape {pred.shape}, its label '
                f'{label.shape}: segment() returns the class map (H, W) at the image\'s size')
        try:
            matrix.update(pred, label)
        except ValueError as exc:
            raise SegmentationDataError(f'{printable(image)}: {exc}') from None
        if progress is not None:
            progress.update(1)
    return matrix
