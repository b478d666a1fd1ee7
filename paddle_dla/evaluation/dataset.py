"""ILSVRC2012 validation layouts, recognised automatically, as ``(path, label)`` samples.

- synset folders: ``val/n01440764/ILSVRC2012_val_00000293.JPEG``; label = index of the
  synset among the 1000 sorted ImageNet synsets (also for a partial set of folders);
- a flat folder and a list file: ``ILSVRC2012_val_00000001.JPEG 65`` per line (optional
  ``val/`` prefix), labels being sorted-synset indices;
- a flat folder and Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the
  first token of the string is the synset).
"""
import csv
import os
import re

from ..imagenet import NUM_CLASSES, synset_index

IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')
LABEL_FILE_NAMES = ('LOC_val_solution.csv', 'val.txt', 'val_list.txt', 'val_labels.txt',
                    'labels.txt')
_SYNSET = re.compile(r'^n\d{8}$')


class DatasetError(ValueError):
    """The data folder or label file cannot be used; the message says how to fix it."""


def _is_image(name):
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith('.')


def find_samples(data_dir, label_file=None):
    """``(samples, layout)``: ``[(path, label)]`` sorted by path, and the layout's name."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DatasetError(f'no such data folder: {data_dir}')
    if label_file is None:
        synset_dirs = [d for d in os.listdir(data_dir)
                       if _SYNSET.match(d) and os.path.isdir(os.path.join(data_dir, d))]
        if synset_dirs:
            return _synset_folders(data_dir, sorted(synset_dirs)), 'synset folders'
        label_file = _find_label_file(data_dir)
    label_file = os.fspath(label_file)
    if not os.path.isfile(label_file):
        raise DatasetError(f'no such label file: {label_file}')
    if label_file.endswith('.csv'):
        return _with_labels(data_dir, _kaggle_labels(label_file), label_file), 'Kaggle CSV'
    return _with_labels(data_dir, _list_labels(label_file), label_file), 'list file'


def _find_label_file(data_dir):
    for folder in (data_dir, os.path.dirname(os.path.abspath(data_dir))):
        for name in LABEL_FILE_NAMES:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    if not any(_is_image(f) for f in os.listdir(data_dir)):
        raise DatasetError(f'{data_dir} holds no images and no synset folders (n01440764/...)')
    raise DatasetError(
        f'{data_dir} holds images but no labels: pass --label-file (a list of "FILE LABEL" '
        f'lines or Kaggle\'s LOC_val_solution.csv), or use synset folders')


def _synset_folders(data_dir, synset_dirs):
    index = synset_index()
    unknown = [d for d in synset_dirs if d not in index]
    if unknown:
        raise DatasetError(f'folders that are not ImageNet-1k synsets: {", ".join(unknown[:5])}')
    samples = []
    for synset in synset_dirs:
        folder = os.path.join(data_dir, synset)
        samples += [(os.path.join(folder, f), index[synset]) for f in os.listdir(folder)
                    if _is_image(f)]
    if not samples:
        raise DatasetError(f'the synset folders in {data_dir} hold no images')
    return sorted(samples)


def _list_labels(label_file):
    entries = []
    with open(label_file, encoding='utf-8') as f:
        lines = [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]
    if lines and all(len(parts) == 1 and parts[0].isdigit() for _, parts in lines):
        raise DatasetError(
            f'{label_file} looks like the devkit\'s ILSVRC2012_validation_ground_truth.txt: '
            f'one 1-based ILSVRC2012_ID per line, in the devkit\'s own class order, not the '
            f'sorted-synset indices models are trained with; use a list of "FILE LABEL" lines '
            f'(labels 0..999 in sorted synset order), synset folders, or LOC_val_solution.csv')
    for number, parts in lines:
        if len(parts) != 2:
            raise DatasetError(f'{label_file}:{number}: expected "FILE LABEL", got '
                               f'{" ".join(parts)!r}')
        try:
            label = int(parts[1])
        except ValueError:
            raise DatasetError(f'{label_file}:{number}: label {parts[1]!r} is not an integer '
                               f'in 0..{NUM_CLASSES - 1}') from None
        if not 0 <= label < NUM_CLASSES:
            raise DatasetError(f'{label_file}:{number}: label {label} is outside '
                               f'0..{NUM_CLASSES - 1}')
        entries.append((parts[0], label))
    return entries


def _kaggle_labels(label_file):
    index = synset_index()
    entries = []
    with open(label_file, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ['ImageId', 'PredictionString']:
            raise DatasetError(f'{label_file}: expected Kaggle\'s header '
                               f'"ImageId,PredictionString", got {header}')
        for number, row in enumerate(reader, 2):
            if not row:
                continue
            synset = row[1].split()[0] if len(row) > 1 and row[1].split() else ''
            if synset not in index:
                raise DatasetError(f'{label_file}:{number}: {synset!r} is not an ImageNet-1k '
                                   f'synset')
            entries.append((row[0] + '.JPEG', index[synset]))
    return entries


def _with_labels(data_dir, entries, label_file):
    if not entries:
        raise DatasetError(f'{label_file} lists no images')
    samples = []
    for name, label in entries:
        candidates = [os.path.join(data_dir, name), os.path.join(data_dir, os.path.basename(name))]
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            raise DatasetError(f'{label_file} lists {name}, which is not in {data_dir}')
        samples.append((path, label))
    return sorted(samples)
