"""``paddle-dla eval`` for the dense networks refuses bad data before any model runs: one line
on stderr naming the file and what is wrong, a non-zero exit, and no metrics or results file
left behind. The data sets are written here: real PNGs, COCO and Cityscapes layouts."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from hostile import assert_refused, run_module

CATEGORIES = [{'id': 1, 'name': 'person'}, {'id': 18, 'name': 'dog'}]


def _png(path, size=(64, 32), mode='RGB'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size[1], size[0], 3) if mode == 'RGB' else (size[1], size[0])
    Image.fromarray(rng.integers(0, 19, shape).astype(np.uint8), mode).save(path)


def _coco(tmp_path, **changes):
    """A valid two-image COCO set, with ``changes`` applied to its JSON."""
    images = tmp_path / 'val2017'
    for name in ('000000000001.png', '000000000002.png'):
        _png(str(images / name))
    data = {'images': [{'id': 1, 'file_name': '000000000001.png'},
                       {'id': 2, 'file_name': '000000000002.png'}],
            'annotations': [{'id': 1, 'image_id': 1, 'category_id': 18, 'bbox': [1, 2, 10, 8],
                             'area': 80, 'iscrowd': 0}],
            'categories': CATEGORIES}
    data.update(changes)
    path = tmp_path / 'instances_val2017.json'
    path.write_text(json.dumps(data))
    return path, images


def _eval_coco(tmp_path, annotations, images, *extra):
    out = tmp_path / 'metrics.json'
    proc = run_module('eval', '--model', 'centernet_dla34', '--weights',
                      tmp_path / 'ctdet.pth', '--coco-annotations', annotations, '--images',
                      images, '--out', out, *extra, timeout=120)
    return proc, [out, tmp_path / 'metrics.detections.json']


@pytest.mark.parametrize('case,phrase', [
    ('truncated', 'truncated?'),
    *[pytest.param(*case, marks=pytest.mark.full) for case in (
        ('garbage', 'is not valid JSON'),
        ('no annotations list', 'no "annotations" list'),
        ('unknown category', 'category 999, which is not among'),
        ('unknown image', 'is of image 7, which is not'),
        ('no box', 'no box [x, y, w, h]'))],
])
def test_a_broken_annotation_file_is_refused_in_one_line(tmp_path, case, phrase):
    annotations, images = _coco(tmp_path)
    text = annotations.read_text()
    data = json.loads(text)
    if case == 'garbage':
        annotations.write_bytes(b'\x00PK\x03\x04 not json')
    elif case == 'truncated':
        annotations.write_text(text[:len(text) // 2])
    elif case == 'no annotations list':
        del data['annotations']
    elif case == 'unknown category':
        data['annotations'][0]['category_id'] = 999
    elif case == 'unknown image':
        data['annotations'][0]['image_id'] = 7
    elif case == 'no box':
        data['annotations'][0]['bbox'] = [1, 2, -3, 4]
    if case not in ('garbage', 'truncated'):
        annotations.write_text(json.dumps(data))
    proc, outputs = _eval_coco(tmp_path, annotations, images)
    assert_refused(proc, 'instances_val2017.json', phrase, absent=outputs)


@pytest.mark.parametrize('case,phrase', [
    ('file without entry', 'have no entry in'),
    pytest.param('image without file', 'has no file in', marks=pytest.mark.full),
    pytest.param('outside the folder', 'outside the image folder', marks=pytest.mark.full),
])
def test_images_and_entries_must_match(tmp_path, case, phrase):
    annotations, images = _coco(tmp_path)
    data = json.loads(annotations.read_text())
    if case == 'image without file':
        os.remove(images / '000000000002.png')
    elif case == 'file without entry':
        _png(str(images / 'stray.png'))
        phrase = 'stray.png'
    else:
        data['images'][1]['file_name'] = '../secret.png'
        _png(str(tmp_path / 'secret.png'))
        annotations.write_text(json.dumps(data))
    proc, outputs = _eval_coco(tmp_path, annotations, images)
    assert_refused(proc, phrase, absent=outputs)


@pytest.mark.full
def test_the_data_options_must_fit_the_model(tmp_path):
    annotations, images = _coco(tmp_path)
    proc = run_module('eval', '--model', 'dla34up', '--coco-annotations', annotations,
                      '--images', images, timeout=60)
    assert_refused(proc, '--coco-annotations scores a detector', 'dla34up')
    proc = run_module('eval', '--model', 'centernet_dla34', '--coco-annotations', annotations,
                      timeout=60)
    assert_refused(proc, '--images')
    proc = run_module('eval', '--model', 'centernet_dla34', '--cityscapes', tmp_path,
                      timeout=60)
    assert_refused(proc, '--cityscapes scores a segmentation network')
    proc = run_module('eval', '--model', 'dla_34', timeout=60)
    assert_refused(proc, '--data-dir is required')


def _cityscapes(tmp_path):
    root = tmp_path / 'cityscapes'
    for stem in ('aachen_000000_000019', 'aachen_000001_000019'):
        _png(str(root / 'leftImg8bit' / 'val' / 'aachen' / f'{stem}_leftImg8bit.png'))
        _png(str(root / 'gtFine' / 'val' / 'aachen' / f'{stem}_gtFine_labelTrainIds.png'),
             mode='L')
    return root


@pytest.mark.parametrize('case,phrase', [
    ('wrong size', 'is 64x31 but its image is 64x32'),
    pytest.param('no train ids', 'createTrainIdLabelImgs', marks=pytest.mark.full),
])
def test_a_broken_cityscapes_set_is_refused_before_the_model_runs(tmp_path, case, phrase):
    root = _cityscapes(tmp_path)
    label = (root / 'gtFine' / 'val' / 'aachen' /
             'aachen_000001_000019_gtFine_labelTrainIds.png')
    if case == 'wrong size':
        _png(str(label), size=(64, 31), mode='L')
    else:
        os.remove(label)
    out = tmp_path / 'metrics.json'
    proc = run_module('eval', '--model', 'dla34up', '--weights', tmp_path / 'seg.pth',
                      '--cityscapes', root, '--out', out, timeout=120)
    assert_refused(proc, 'aachen_000001_000019', phrase, absent=[out])
