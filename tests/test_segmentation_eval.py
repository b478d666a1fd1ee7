"""Cityscapes mIoU as ucbdrive/dla's segment.py computes it, the two val layouts, and every
way a val set is refused (one line naming the offending file)."""
import os

import numpy as np
import pytest
from PIL import Image

from paddle_dla.evaluation.segmentation import (
    ConfusionMatrix, SegmentationDataError, evaluate_segmentation, find_cityscapes,
    format_iou_table, read_label)
from paddle_dla.models.dense_variants import CITYSCAPES_CLASSES

N = 19
W, H = 64, 32


# segment.py's own scoring, as the reference.
def fast_hist(pred, label, n):
    k = (label >= 0) & (label < n)
    return np.bincount(n * label[k].astype(int) + pred[k], minlength=n ** 2).reshape(n, n)


def per_class_iu(hist):
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))


def reference(pairs):
    hist = np.zeros((N, N))
    for pred, label in pairs:
        hist += fast_hist(pred.flatten(), label.flatten(), N)
    ious = per_class_iu(hist)
    return ious, np.nanmean(ious)


def random_maps(rng, count, shape=(H, W), classes=N):
    """(prediction, label) pairs: a noisy, non-symmetric confusion, ignore pixels in labels,
    some classes never seen (NaN IoU)."""
    out = []
    for _ in range(count):
        label = rng.integers(0, classes, shape).astype(np.uint8)
        label[rng.random(shape) < 0.2] = 255
        pred = label.astype(np.int64).copy()
        noise = rng.random(shape) < 0.4
        pred[noise] = rng.integers(0, classes, int(noise.sum()))
        pred[label == 3] = 4  # one-way confusion
        pred[label == 255] = rng.integers(0, classes, int((label == 255).sum()))
        out.append((pred, label))
    return out


def one_line_naming(exc_info, name):
    message = str(exc_info.value)
    assert '\n' not in message, message
    assert name in message, message
    return message


# -- the scores ------------------------------------------------------------------------------

def test_matches_segment_py_exactly():
    rng = np.random.default_rng(0)
    maps = random_maps(rng, 6, classes=17)  # classes 17 and 18 never appear: NaN
    matrix = ConfusionMatrix()
    for pred, label in maps:
        matrix.update(pred, label)
    ious, miou = reference(maps)
    assert np.array_equal(np.isnan(matrix.iou()), np.isnan(ious))
    assert np.isnan(matrix.iou()[17:]).all()
    assert np.array_equal(matrix.iou()[:17], ious[:17])
    assert matrix.miou() == miou
    assert 0 < matrix.miou() < 1
    shown = matrix.as_dict(CITYSCAPES_CLASSES)
    assert shown['mIoU'] == miou * 100
    assert shown['IoU']['road'] == ious[0] * 100
    assert shown['IoU']['bicycle'] is None
    labelled = sum(int((label != 255).sum()) for _, label in maps)
    right = sum(int(((pred == label) & (label != 255)).sum()) for pred, label in maps)
    assert matrix.pixels == labelled
    assert matrix.pixel_accuracy() == right / labelled


def test_real_mistakes_change_the_answer():
    rng = np.random.default_rng(1)
    maps = random_maps(rng, 3)
    _, miou = reference(maps)
    matrix = ConfusionMatrix()
    for pred, label in maps:
        matrix.update(pred, label)
    # counting ignore pixels (as if 255 were clipped to the last class)
    clipped = [(p, np.minimum(lab, N - 1)) for p, lab in maps]
    assert reference(clipped)[1] != miou
    # rows are labels: a transposed matrix keeps every IoU (the formula is symmetric), so the
    # orientation is checked directly on the row sums
    hist = sum(fast_hist(p.flatten(), lab.flatten(), N) for p, lab in maps)
    assert np.array_equal(matrix.hist, hist) and not np.array_equal(hist, hist.T)
    labelled = np.concatenate([lab[lab != 255] for _, lab in maps])
    assert np.array_equal(matrix.hist.sum(1), np.bincount(labelled, minlength=N))
    # prediction and label swapped in the call: the mask then looks at the prediction, and
    # the ignore pixels (255) land in the matrix's bins, or past its end
    wrong = np.zeros((N, N), np.int64)
    for pred, label in maps:
        a, b = label.flatten().astype(np.int64), pred.flatten()
        k = (b >= 0) & (b < N)
        wrong += np.bincount(N * b[k] + a[k], minlength=N * N)[:N * N].reshape(N, N)
    assert per_class_iu(wrong).tolist() != per_class_iu(hist).tolist()
    assert np.nanmean(per_class_iu(wrong)) != miou


def test_merge_of_shards_is_the_whole():
    rng = np.random.default_rng(2)
    maps = random_maps(rng, 4)
    whole, shards = ConfusionMatrix(), [ConfusionMatrix(), ConfusionMatrix()]
    for i, (pred, label) in enumerate(maps):
        whole.update(pred, label)
        shards[i % 2].update(pred, label)
    assert np.array_equal(ConfusionMatrix.merge(shards).hist, whole.hist)
    assert np.array_equal((shards[0] + shards[1]).hist, whole.hist)
    with pytest.raises(ValueError):
        whole + ConfusionMatrix(num_classes=5)


def test_update_refuses_bad_maps():
    matrix = ConfusionMatrix()
    label = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match='shape'):
        matrix.update(np.zeros((3, 2), np.int64), label)
    with pytest.raises(ValueError, match='19'):
        matrix.update(np.full((2, 3), 19), label)
    with pytest.raises(ValueError):
        matrix.update(np.full((2, 3), -1), label)
    # a prediction on an ignored pixel is not looked at
    matrix.update(np.array([[0, 0, 0], [0, 0, 0]]), np.array([[0, 0, 0], [0, 0, 255]]))
    assert matrix.pixels == 5 and matrix.miou() == 1.0
    assert np.isnan(ConfusionMatrix().miou())


def test_table():
    matrix = ConfusionMatrix().update(np.array([[0, 1]]), np.array([[0, 0]]))
    table = format_iou_table(matrix, CITYSCAPES_CLASSES)
    lines = table.splitlines()
    assert lines[0].split() == ['class', 'IoU', '%']
    assert lines[1].split() == ['road', '50.00']
    assert lines[2].split() == ['sidewalk', '0.00']
    assert lines[3].split() == ['building', 'n/a']
    assert lines[-1].split() == ['mIoU', '25.00']


# -- layouts ---------------------------------------------------------------------------------

def write_image(path, size=(W, H)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new('RGB', size, (10, 20, 30)).save(path)


def write_label(path, values=None, size=(W, H), mode='L'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if values is None:
        values = (np.arange(size[0] * size[1]) % 20).reshape(size[1], size[0])
        values[values == 19] = 255
    Image.fromarray(np.asarray(values, np.uint8)).convert(mode).save(path)
    return np.asarray(values, np.uint8)


def official(root, cities=(('frankfurt', 2), ('lindau', 1))):
    for city, count in cities:
        for i in range(count):
            stem = f'{city}_000000_{i:06d}'
            write_image(str(root / 'leftImg8bit' / 'val' / city / f'{stem}_leftImg8bit.png'))
            write_label(str(root / 'gtFine' / 'val' / city / f'{stem}_gtFine_labelTrainIds.png'))
    return root


def listed(root, count=3):
    images, labels = [], []
    for i in range(count):
        write_image(str(root / 'images' / f'{i}.png'))
        write_label(str(root / 'labels' / f'{i}.png'))
        images.append(f'images/{i}.png')
        labels.append(f'labels/{i}.png')
    (root / 'val_images.txt').write_text('\n'.join(images) + '\n\n')
    (root / 'val_labels.txt').write_text('\n'.join(labels) + '\n')
    return root


def test_official_layout(tmp_path):
    root = official(tmp_path)
    # a label without an image, and other gtFine files, are left alone
    lindau = tmp_path / 'gtFine' / 'val' / 'lindau'
    write_label(str(lindau / 'lindau_9_9_gtFine_labelTrainIds.png'))
    write_label(str(lindau / 'lindau_000000_000000_gtFine_labelIds.png'))
    pairs = find_cityscapes(root)
    assert len(pairs) == 3 and pairs == sorted(pairs)
    assert all(os.path.isabs(p) and os.path.isfile(p) for pair in pairs for p in pair)
    image, label = pairs[0]
    assert image.endswith('frankfurt_000000_000000_leftImg8bit.png')
    assert label.endswith('frankfurt_000000_000000_gtFine_labelTrainIds.png')


def test_list_layout(tmp_path, monkeypatch):
    root = listed(tmp_path)
    monkeypatch.chdir('/')
    pairs = find_cityscapes(str(root))
    assert [(os.path.basename(i), os.path.basename(lab)) for i, lab in pairs] == \
        [('0.png', '0.png'), ('1.png', '1.png'), ('2.png', '2.png')]
    assert all(os.path.isabs(p) for pair in pairs for p in pair)
    assert all('images' in i and 'labels' in lab for i, lab in pairs)


def test_missing_train_id_label(tmp_path):
    root = official(tmp_path)
    os.remove(tmp_path / 'gtFine/val/lindau/lindau_000000_000000_gtFine_labelTrainIds.png')
    with pytest.raises(SegmentationDataError) as info:
        find_cityscapes(root)
    message = one_line_naming(info, 'lindau_000000_000000_gtFine_labelTrainIds.png')
    assert 'createTrainIdLabelImgs' in message


def test_lists_of_different_lengths(tmp_path):
    root = listed(tmp_path)
    (root / 'val_labels.txt').write_text('labels/0.png\nlabels/1.png\n')
    with pytest.raises(SegmentationDataError) as info:
        find_cityscapes(root)
    one_line_naming(info, 'val_labels.txt')


def test_missing_listed_file(tmp_path):
    root = listed(tmp_path)
    os.remove(root / 'labels' / '1.png')
    with pytest.raises(SegmentationDataError) as info:
        find_cityscapes(root)
    one_line_naming(info, os.path.join('labels', '1.png'))


def test_empty_folder(tmp_path):
    with pytest.raises(SegmentationDataError) as info:
        find_cityscapes(tmp_path)
    message = one_line_naming(info, str(tmp_path))
    assert 'val_images.txt' in message and 'leftImg8bit' in message


# -- label files -----------------------------------------------------------------------------

def test_read_label(tmp_path):
    values = write_label(str(tmp_path / 'l.png'))
    assert np.array_equal(read_label(tmp_path / 'l.png', (W, H)), values)
    palette = Image.fromarray(values, 'P')
    palette.putpalette([i % 256 for i in range(768)])
    palette.save(tmp_path / 'p.png')
    assert np.array_equal(read_label(tmp_path / 'p.png', (W, H)), values)


@pytest.mark.parametrize('case', ['wrong size', 'RGB', 'value 40', 'truncated', 'missing'])
def test_bad_label(tmp_path, case):
    path = tmp_path / f'bad label {case}.png'
    if case == 'wrong size':
        write_label(str(path), size=(W, H - 1))
    elif case == 'RGB':
        write_label(str(path), mode='RGB')
    elif case == 'value 40':
        values = np.zeros((H, W), np.uint8)
        values[3, 5] = 40
        write_label(str(path), values)
    elif case == 'truncated':
        write_label(str(path), np.random.default_rng(0).integers(0, 19, (H, W)))
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    with pytest.raises(SegmentationDataError) as info:
        read_label(path, (W, H))
    message = one_line_naming(info, path.name)
    if case == 'value 40':
        assert '40' in message


def test_label_too_large_is_refused_before_decoding(tmp_path):
    path = tmp_path / 'huge.png'
    Image.new('L', (9000, 1)).save(path)
    with pytest.raises(SegmentationDataError) as info:
        read_label(path, (9000, 1))
    assert '8192' in one_line_naming(info, 'huge.png')


# -- end to end ------------------------------------------------------------------------------

def labels_of(pairs):
    return {image: np.asarray(Image.open(label)) for image, label in pairs}


class Progress:
    count = 0

    def update(self, n):
        self.count += n


def test_evaluate_perfect(tmp_path):
    pairs = find_cityscapes(official(tmp_path))
    truth = labels_of(pairs)
    progress = Progress()
    matrix = evaluate_segmentation(lambda image: np.where(truth[image] == 255, 0, truth[image]),
                                   pairs, progress)
    assert matrix.miou() == 1.0 and matrix.pixel_accuracy() == 1.0
    assert progress.count == len(pairs)


def test_evaluate_shifted(tmp_path):
    pairs = find_cityscapes(listed(tmp_path))
    truth = labels_of(pairs)

    def segment(image):
        return np.roll(np.where(truth[image] == 255, 0, truth[image]), 1, axis=1)

    matrix = evaluate_segmentation(segment, pairs)
    ious, miou = reference([(segment(image), truth[image]) for image, _ in pairs])
    assert 0 < matrix.miou() < 1
    assert matrix.miou() == miou
    assert np.array_equal(matrix.iou(), ious, equal_nan=True)


def test_evaluate_refuses_a_prediction_of_another_size(tmp_path):
    pairs = find_cityscapes(listed(tmp_path, 1))
    with pytest.raises(SegmentationDataError) as info:
        evaluate_segmentation(lambda image: np.zeros((H // 2, W // 2), np.int64), pairs)
    one_line_naming(info, pairs[0][0])


def test_evaluate_checks_each_label_against_its_image(tmp_path):
    root = official(tmp_path)
    pairs = find_cityscapes(root)
    write_label(pairs[1][1], size=(W // 2, H))
    with pytest.raises(SegmentationDataError) as info:
        evaluate_segmentation(lambda image: np.zeros((H, W), np.int64), pairs)
    one_line_naming(info, os.path.basename(pairs[1][1]))
