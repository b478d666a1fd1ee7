"""ILSVRC2012 validation layouts, recognised automatically, as ``(path, label)`` samples.

- synset folders: ``val/n01440764/ILSVRC2012_val_00000293.JPEG``; label = index of the
  synset among the 1000 sorted ImageNet synsets (also for a partial set of folders);
- a flat folder and a list file: ``ILSVRC2012_val_00000001.JPEG 65`` per line (optional
  ``val/`` prefix), labels being sorted-synset indices;
- a flat folder and Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the
  first token of the string is the synset).

Without a label file named by the caller, synset folders are used if the data folder holds
any; otherwise the first of ``LABEL_FILE_NAMES`` found in the data folder, then in its
parent. A ``.csv`` label file is read as Kaggle's, any other as a list file. The
:class:`LabelSource` returned says which file was read and how it was chosen.
"""
import csv
import io
import os
import re
from dataclasses import dataclass

from ..core.errors import PaddleDLAError
from ..core.textfiles import read_text_file
from ..models.imagenet import CLASSES_FILE, NUM_CLASSES, synset_index

IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')
LABEL_FILE_NAMES = ('LOC_val_solution.csv', 'val.txt', 'val_list.txt', 'val_labels.txt',
                    'labels.txt')
_SYNSET = re.compile(r'^n\d{8}$')
# The label files of the 50,000 val images take a few MiB; a far larger file is not a
# label file and is not read into memory.
MAX_LABEL_FILE_BYTES = 64 << 20


class DatasetError(PaddleDLAError, ValueError):
    """The data folder or label file cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class LabelSource:
    """Where the labels came from, so that a report can name the file rather than the kind:
    a list found in a parent folder must not pass unnoticed."""

    layout: str             # 'synset folders', 'list file' or 'Kaggle CSV'
    path: str               # the label file read; for synset folders, the class list
    how: str                # how it was chosen
    unused: tuple = ()      # other recognised label files found, not read

    def describe(self):
        text = f'{os.path.abspath(self.path)} ({self.layout}, {self.how})'
        if self.unused:
            text += '; also found, not read: ' + ', '.join(map(os.path.abspath, self.unused))
        return text


def _is_image(name):
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith('.')


def find_samples(data_dir, label_file=None):
    """``(samples, labels)``: ``[(path, label)]`` sorted by path, and the
    :class:`LabelSource` they were read from."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DatasetError(f'{data_dir} is not a folder' if os.path.exists(data_dir)
                           else f'no such data folder: {data_dir}')
    if label_file is not None:
        return _from_label_file(data_dir, os.fspath(label_file), 'as given')
    synset_dirs = [d for d in _listdir(data_dir)
                   if _SYNSET.match(d) and os.path.isdir(os.path.join(data_dir, d))]
    if synset_dirs:
        return (_synset_folders(data_dir, sorted(synset_dirs)),
                LabelSource('synset folders', CLASSES_FILE,
                            'folder names indexed in this sorted synset list'))
    (label_file, how), *others = _label_candidates(data_dir)
    return _from_label_file(data_dir, label_file, how, tuple(path for path, _ in others))


def _from_label_file(data_dir, label_file, how, unused=()):
    """Samples of a flat folder labelled by ``label_file``: Kaggle's CSV by its extension,
    a list file otherwise."""
    text = _read_label_file(label_file)
    kaggle = label_file.endswith('.csv')
    entries = (_kaggle_labels if kaggle else _list_labels)(label_file, text)
    return (_with_labels(data_dir, entries, label_file),
            LabelSource('Kaggle CSV' if kaggle else 'list file', label_file, how, unused))


def _listdir(folder):
    """``os.listdir`` whose failure names the folder."""
    try:
        return os.listdir(folder)
    except OSError as exc:
        raise DatasetError(f'cannot read folder {folder}: {exc.strerror or exc}') from None


def _read_label_file(label_file):
    """The label file's text; a folder, an oversized file or bytes that are not UTF-8 are
    refused naming the file (and the offending byte)."""
    return read_text_file(label_file, MAX_LABEL_FILE_BYTES, DatasetError, 'label file',
                          'ImageNet val\'s label files take a few MiB')


def _label_places(data_dir):
    """The folders searched for a label file, in order, with how the report says it was found."""
    places = [(data_dir, 'found in the data folder')]
    parent = os.path.dirname(os.path.abspath(data_dir))
    if parent != os.path.abspath(data_dir):
        places.append((parent, 'found in the data folder\'s parent; --label-file to choose '
                               'another'))
    return places


def _label_candidates(data_dir):
    """``[(path, how found)]`` of the recognised label files, the one to use first."""
    found = [(os.path.join(folder, name), how) for folder, how in _label_places(data_dir)
             for name in LABEL_FILE_NAMES if os.path.isfile(os.path.join(folder, name))]
    if found:
        return found
    if not any(_is_image(f) for f in _listdir(data_dir)):
        raise DatasetError(f'{data_dir} holds no images and no synset folders (n01440764/...)')
    raise DatasetError(
        f'{data_dir} holds images but no labels (no {", ".join(LABEL_FILE_NAMES)} in it or '
        f'its parent): pass --label-file (a list of "FILE LABEL" lines or Kaggle\'s '
        f'LOC_val_solution.csv), or use synset folders')


def _synset_folders(data_dir, synset_dirs):
    index = synset_index()
    unknown = [d for d in synset_dirs if d not in index]
    if unknown:
        raise DatasetError(f'folders that are not ImageNet-1k synsets: {", ".join(unknown[:5])}')
    samples = []
    for synset in synset_dirs:
        folder = os.path.join(data_dir, synset)
        # Regular files only: opening a pipe named like an image would wait forever.
        samples += [(os.path.join(folder, f), index[synset]) for f in _listdir(folder)
                    if _is_image(f) and os.path.isfile(os.path.join(folder, f))]
    if not samples:
        raise DatasetError(f'the synset folders in {data_dir} hold no images')
    return sorted(samples)


def _list_labels(label_file, text):
    """``[(name, label, line number)]`` from "FILE LABEL" lines."""
    entries = []
    lines = [(n, line.split()) for n, line in enumerate(io.StringIO(text, newline=None), 1)
             if line.strip()]
    if lines and all(len(parts) == 1 and parts[0].isdigit() for _, parts in lines):
        raise DatasetError(
            f'{label_file} looks like the devkit\'s ILSVRC2012_validation_ground_truth.txt: '
            f'one 1-based ILSVRC2012_ID per line, in the devkit\'s own class order, not the '
            f'sorted-synset indices models are trained with; use a list of "FILE LABEL" lines '
            f'(labels 0..999 in sorted synset order), synset folders, or LOC_val_solution.csv')
    for number, parts in lines:
        if len(parts) != 2:
            raise DatasetError(f'{label_file}:{number}: expected "FILE LABEL", got '
                               f'{" ".join(parts)[:200]!r}')
        try:
            label = int(parts[1])
        except ValueError:
            raise DatasetError(f'{label_file}:{number}: label {parts[1][:50]!r} is not an '
                               f'integer in 0..{NUM_CLASSES - 1}') from None
        if not 0 <= label < NUM_CLASSES:
            raise DatasetError(f'{label_file}:{number}: label {label} is outside '
                               f'0..{NUM_CLASSES - 1}')
        entries.append((parts[0], label, number))
    return entries


def _kaggle_labels(label_file, text):
    """``[(name, label, line number)]`` from Kaggle's LOC_val_solution.csv."""
    index = synset_index()
    entries = []
    reader = csv.reader(io.StringIO(text, newline=''))
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ['ImageId', 'PredictionString']:
            raise DatasetError(f'{label_file}: expected Kaggle\'s header '
                               f'"ImageId,PredictionString", got {str(header)[:200]}')
        for row in reader:
            if not row:
                continue
            synset = row[1].split()[0] if len(row) > 1 and row[1].split() else ''
            if synset not in index:
                raise DatasetError(f'{label_file}:{reader.line_num}: {synset[:50]!r} is not an '
                                   f'ImageNet-1k synset')
            entries.append((row[0] + '.JPEG', index[synset], reader.line_num))
    except csv.Error as exc:
        raise DatasetError(f'{label_file}:{reader.line_num}: {exc}') from None
    return entries


def _with_labels(data_dir, entries, label_file):
    """Resolve listed names to files; an image listed twice is refused, whatever labels it
    was given, since it would be counted twice."""
    if not entries:
        raise DatasetError(f'{label_file} lists no images')
    samples, seen = [], {}
    for name, label, line in entries:
        candidates = [os.path.join(data_dir, name), os.path.join(data_dir, os.path.basename(name))]
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            raise DatasetError(f'{label_file}:{line}: lists {name}, which is not in {data_dir}')
        key = os.path.normpath(path)
        if key in seen:
            raise DatasetError(_listed_twice(label_file, line, name, label, *seen[key]))
        seen[key] = (line, label)
        samples.append((path, label))
    return sorted(samples)


def _listed_twice(label_file, line, name, label, first_line, first_label):
    if label == first_label:
        return f'{label_file}:{line}: {name} is listed twice (also on line {first_line})'
    return (f'{label_file}:{line}: {name} has label {label} here but {first_label} on line '
            f'{first_line}')
