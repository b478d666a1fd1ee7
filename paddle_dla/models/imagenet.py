"""The 1000 ImageNet-1k classes: WordNet synsets in index order, with their names."""
import functools
import os

from ..core import PACKAGE_DIR

CLASSES_FILE = os.path.join(PACKAGE_DIR, 'data', 'imagenet_classes.tsv')
NUM_CLASSES = 1000
NUM_VAL_IMAGES = 50000


@functools.lru_cache(maxsize=None)
def _rows():
    with open(CLASSES_FILE, encoding='utf-8') as f:
        rows = [line.rstrip('\n').split('\t', 1) for line in f if not line.startswith('#')]
    assert len(rows) == NUM_CLASSES
    return tuple((synset, names) for synset, names in rows)


def synsets():
    """WordNet IDs; a class's index is its position (the sorted order ImageNet tools use)."""
    return [s for s, _ in _rows()]


def class_names():
    """A short human name per class: the first of its WordNet lemmas."""
    return [names.split(',')[0].strip() for _, names in _rows()]


@functools.lru_cache(maxsize=None)
def synset_index():
    return {s: i for i, s in enumerate(synsets())}
