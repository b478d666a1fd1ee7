"""Detections as COCO results records (``[{image_id, category_id, bbox, score}]``), the
format pycocotools' ``COCO.loadRes`` and the COCO server read: boxes ``[x, y, w, h]`` in the
original image's pixels, unclipped, as CenterNet's ``convert_eval_format`` writes them."""
import os

from ..models.dense_variants import COCO_CATEGORY_IDS, COCO_CLASSES

# CenterNet's convert_eval_format rounds boxes and scores to two decimals.
CENTERNET_DECIMALS = 2


def category_ids_of(class_names, num_classes=None):
    """The category id of each class: COCO's own ids (1 to 90, with gaps) for the 80 COCO
    classes, the class index + 1 for any other model."""
    names = tuple(class_names or ())
    if names == COCO_CLASSES:
        return COCO_CATEGORY_IDS
    count = len(names) if names else int(num_classes or 0)
    return tuple(range(1, count + 1))


def image_ids_of(file_names):
    """An image id for each file: the number its name is when every name is a distinct
    number (COCO's ``000000397133.jpg`` is 397133), else its position from 1."""
    stems = [os.path.splitext(os.path.basename(os.fspath(f)))[0] for f in file_names]
    if stems and all(s.isdigit() for s in stems):
        numbers = [int(s) for s in stems]
        if len(set(numbers)) == len(numbers):
            return numbers
    return list(range(1, len(stems) + 1))


def _number(value, decimals):
    return float(value) if decimals is None else round(float(value), decimals)


def coco_records(detections, image_id, category_ids, threshold=0.0, file_name=None,
                 decimals=None):
    """One image's :class:`~paddle_dla.tasks.decode.Detections` (boxes in its pixels) as
    COCO results records, best first: every detection scoring at least ``threshold`` (0
    keeps all K). ``decimals=2`` rounds as CenterNet's evaluation does; None keeps every
    digit. ``file_name``, when given, is recorded too (pycocotools ignores it)."""
    records = []
    for box, score, label in zip(detections.boxes, detections.scores, detections.classes):
        if score < threshold:
            continue
        label = int(label)
        if not 0 <= label < len(category_ids):
            raise ValueError(f'class {label} has no category id ({len(category_ids)} given)')
        x1, y1, x2, y2 = (float(v) for v in box)
        record = {} if file_name is None else {'file_name': str(file_name)}
        record.update(image_id=int(image_id), category_id=int(category_ids[label]),
                      bbox=[_number(v, decimals) for v in (x1, y1, x2 - x1, y2 - y1)],
                      score=_number(score, decimals))
        records.append(record)
    return records
