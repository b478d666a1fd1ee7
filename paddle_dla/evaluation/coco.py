"""COCO detection, scored as CenterNet's ``test.py`` scores it: every image of an
annotation file, each model's detections as COCO results (two decimals, unclipped, all K),
and pycocotools' ``COCOeval`` for boxes with its 12 summary numbers.

The annotation file and the image folder are checked whole before any image is run: a
malformed or truncated file, an image entry with no file, a file with no entry, an
annotation of an unknown image or category, or a model whose categories the file lacks is
one line naming the file and what is wrong.
"""
import contextlib
import io
import json
import math
import os
from dataclasses import dataclass

from ..core.errors import PaddleDLAError, printable
from ..core.textfiles import read_text_file

# COCOeval.stats in its order, as the summary prints them.
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl',
              'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl')
# instances_val2017.json is 25 MB and the train set's 450 MB; far more is not read.
MAX_ANNOTATION_BYTES = 1 << 30
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class CocoDataError(PaddleDLAError, ValueError):
    """The annotation file or the image folder cannot be scored; the message names the file."""


@dataclass(frozen=True)
class CocoImage:
    """One image entry of the annotation file and the file it names."""

    id: int
    file_name: str
    path: str


@dataclass
class CocoSet:
    """An annotation file read and checked: its parsed contents, its images (by id), its
    category ids."""

    path: str
    dataset: dict
    images: list
    category_ids: frozenset

    def check_categories(self, category_ids):
        """Refuse a model whose category ids the annotation file does not have: its
        detections would be scored against nothing."""
        unknown = sorted(set(category_ids) - self.category_ids)
        if unknown:
            shown = ', '.join(map(str, unknown[:8])) + (' ...' if len(unknown) > 8 else '')
            raise CocoDataError(f'{printable(self.path)} has no category with id {shown}, which '
                                f'the model predicts: is it an annotation file for this '
                                f'model\'s {len(category_ids)} classes?')


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value)


def read_annotations(path, images_dir):
    """The annotation file at ``path``, checked, with its images found in ``images_dir``."""
    shown = printable(path)
    dataset = _load_json(path, shown)
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(dataset.get(key), list):
            raise CocoDataError(f'{shown} is not a COCO annotation file: it has no '
                                f'"{key}" list')
    category_ids = _unique_ids(dataset['categories'], 'category', shown)
    image_ids = _unique_ids(dataset['images'], 'image', shown)
    _check_annotations(dataset['annotations'], image_ids, category_ids, shown)
    images = _match_files(dataset['images'], images_dir, shown)
    return CocoSet(os.path.abspath(path), dataset, images, frozenset(category_ids))


def _load_json(path, shown):
    text = read_text_file(path, MAX_ANNOTATION_BYTES, CocoDataError, 'annotation file',
                          'it is not an annotation file')
    try:
        dataset = json.loads(text)
    except json.JSONDecodeError as exc:
        cut = (' (it ends before its last bracket: truncated?)'
               if not text.rstrip().endswith(('}', ']')) else '')
        raise CocoDataError(f'{shown} is not valid JSON: {exc.msg} (line {exc.lineno}, '
                            f'column {exc.colno}){cut}') from None
    if not isinstance(dataset, dict):
        raise CocoDataError(f'{shown} is not a COCO annotation file: it holds a '
                            f'{type(dataset).__name__}, not an object')
    return dataset


def _unique_ids(entries, kind, shown):
    ids = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _is_int(entry.get('id')):
            raise CocoDataError(f'{shown}: {kind} entry {index} has no integer "id"')
        if entry['id'] in ids:
            raise CocoDataError(f'{shown}: {kind} id {entry["id"]} appears twice')
        ids.add(entry['id'])
    return ids


def _check_annotations(annotations, image_ids, category_ids, shown):
    """What COCOeval reads of each annotation, checked here so that it cannot fail (or
    score silently wrong) halfway."""
    seen = set()
    for index, ann in enumerate(annotations):
        where = f'{shown}: annotation {index}'
        if not isinstance(ann, dict):
            raise CocoDataError(f'{where} is not an object')
        for key in ('id', 'image_id', 'category_id'):
            if not _is_int(ann.get(key)):
                raise CocoDataError(f'{where} has no integer "{key}"')
        if ann['id'] in seen:
            raise CocoDataError(f'{where}: annotation id {ann["id"]} appears twice')
        seen.add(ann['id'])
        if ann['image_id'] not in image_ids:
            raise CocoDataError(f'{where} is of image {ann["image_id"]}, which is not among '
                                f'the file\'s images')
        if ann['category_id'] not in category_ids:
            raise CocoDataError(f'{where} has category {ann["category_id"]}, which is not '
                                f'among the file\'s categories')
        bbox = ann.get('bbox')
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_finite, bbox))
                and bbox[2] >= 0 and bbox[3] >= 0):
            raise CocoDataError(f'{where} has no box [x, y, w, h] of finite numbers with '
                                f'w, h >= 0')
        if not _finite(ann.get('area')) or ann['area'] < 0:
            raise CocoDataError(f'{where} has no "area" (a number >= 0)')
        if ann.get('iscrowd', 0) not in (0, 1):
            raise CocoDataError(f'{where} has "iscrowd" {ann["iscrowd"]!r}: 0 or 1')


def _match_files(entries, images_dir, shown):
    """Every image entry's file in ``images_dir``, and no image file there without an entry."""
    folder = os.path.abspath(images_dir)
    if not os.path.isdir(folder):
        raise CocoDataError(f'no such image folder: {printable(folder)}')
    images, missing = [], []
    for index, entry in enumerate(entries):
        name = entry.get('file_name')
        if not isinstance(name, str) or not name.strip():
            raise CocoDataError(f'{shown}: image {entry["id"]} has no "file_name"')
        parts = name.replace('\\', '/').split('/')
        if os.path.isabs(name) or '..' in parts:
            raise CocoDataError(f'{shown}: image {entry["id"]} names {printable(name)}, '
                                f'outside the image folder')
        path = os.path.join(folder, *parts)
        if not os.path.isfile(path):
            missing.append(path)
        images.append(CocoImage(entry['id'], name, path))
    if missing:
        raise CocoDataError(f'{len(missing):,} of the {_count(len(entries), "image")} of '
                            f'{shown} {"has" if len(missing) == 1 else "have"} no file in '
                            f'{printable(folder)}; the first: {printable(missing[0])}')
    named = {os.path.normcase(image.path) for image in images}
    stray = sorted(os.path.join(parent, name)
                   for parent in sorted({os.path.dirname(image.path) for image in images})
                   for name in os.listdir(parent)
                   if name.lower().endswith(IMAGE_SUFFIXES)
                   and os.path.normcase(os.path.join(parent, name)) not in named)
    if stray:
        verb = 'has' if len(stray) == 1 else 'have'
        raise CocoDataError(f'{_count(len(stray), "image file")} in '
                            f'{printable(os.path.dirname(stray[0]))} {verb} no entry in '
                            f'{shown}; the first: {printable(os.path.basename(stray[0]))}: '
                            f'give the image folder of this annotation file')
    if not images:
        raise CocoDataError(f'{shown} lists no images')
    return sorted(images, key=lambda image: image.id)


def _count(n, noun):
    return f'{n:,} {noun}' + ('' if n == 1 else 's')


def coco_evaluate(coco_set, records, image_ids):
    """pycocotools' bbox ``COCOeval`` of ``records`` over ``image_ids``: ``(stats, summary)``,
    the 12 numbers (fractions, as COCOeval gives them) and its printed summary."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise CocoDataError('COCO evaluation needs pycocotools: pip install pycocotools') \
            from None
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        truth = COCO()
        truth.dataset = coco_set.dataset
        truth.createIndex()
        if not records:  # loadRes cannot read an empty list: nothing found scores zero
            return [0.0] * len(STAT_NAMES), 'no detections: every number is 0\n'
        found = truth.loadRes(records)
        evaluation = COCOeval(truth, found, 'bbox')
        evaluation.params.imgIds = sorted(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.summarize()
    return [float(s) for s in evaluation.stats], summary.getvalue()


def as_metrics(stats):
    """The 12 numbers by name, in percent as the papers give them."""
    return {name: round(100 * value, 3) for name, value in zip(STAT_NAMES, stats)}


def verdict(published, weights, images, ap, flip_test, keep_res, tolerance, resized_from=None):
    """'PASS' / 'FAIL' against the published AP, or why there is none. CenterNet publishes
    no digest of its files, so the released checkpoint is known by its file name alone, and
    the verdict says so. ``resized_from``: the recipe the AP was published at, when
    --input-size changed the input."""
    if published is None:
        return 'no verdict: no published numbers for this model'
    name = os.path.basename(os.fspath(weights or '')).split('.')[0]
    if name != published.checkpoint:
        return (f'no verdict: the published {published.ap_for(flip_test)} AP is for '
                f'{published.checkpoint}.pth')
    if keep_res:
        return 'no verdict: the published numbers are at 512x512, not --keep-res'
    if resized_from:
        return (f'no verdict: the published {published.ap_for(flip_test)} AP is at '
                f'{resized_from.width}x{resized_from.height} input')
    if images != published.images:
        return f'no verdict: {images:,} of the {published.images:,} images of {published.dataset}'
    expected = published.ap_for(flip_test)
    outcome = 'PASS' if abs(ap - expected) <= tolerance else 'FAIL'
    return (f'{outcome}: published {expected} AP ({published.source}), |delta| '
            f'{abs(ap - expected):.2f} <= {tolerance:g} is the bar; the file is known as '
            f'{published.checkpoint} by its name only (no digest is published)')
