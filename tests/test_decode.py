"""Post-processing of the dense networks (``tasks.decode``, ``tasks.inputs``, ``tasks.drawing``).

The decoding is held to a PyTorch reference of CenterNet's ``ctdet_decode`` and FairMOT's
``mot_decode`` written here from the structure of the public code (``_nms`` by max-pool,
``_topk`` per class then over all, ``_transpose_and_gather_feat``); those tests are marked
``torch``. Everything else needs only NumPy and Pillow.
"""
import os

import numpy as np
import pytest
from PIL import Image

from paddle_dla.tasks.decode import (DecodeError, Detections, decode_detections, heatmap_peaks,
                                     max_pool3x3, segment, sigmoid)
from paddle_dla.models.dense_variants import COCO_MEAN_BGR, COCO_STD_BGR
from paddle_dla.tasks.inputs import (ImageReadError, class_map_to_image, letterbox_image,
                                     read_bgr, stretch_image)
from paddle_dla.tasks.drawing import (CITYSCAPES_PALETTE, class_colour, draw_detections,
                                draw_segmentation, label_palette, save_png)

# CenterNet's COCO statistics, in OpenCV's BGR order.
CENTERNET_MEAN, CENTERNET_STD = COCO_MEAN_BGR, COCO_STD_BGR


def _maps(seed, n, c, h, w, wh_channels=2, reg=True, ids=0, blobs=0):
    """Random network outputs with a few planted peaks (logits far above the noise, one in
    a corner and one on an edge, where the max-pool's padding matters), and ``blobs``
    Gaussian bumps per map, as objects make them (their slopes are where NMS matters)."""
    rng = np.random.default_rng(seed)
    hm = rng.normal(-2.0, 1.0, (n, c, h, w))
    yy, xx = np.mgrid[:h, :w]
    for b, cls in np.ndindex(n, c):
        for _ in range(blobs):
            y, x, height = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 5)
            hm[b, cls] += height * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8)
    out = {'hm': hm.astype(np.float32),
           'wh': rng.uniform(0.5, 12.0, (n, wh_channels, h, w)).astype(np.float32)}
    if reg:
        out['reg'] = rng.uniform(0.0, 1.0, (n, 2, h, w)).astype(np.float32)
    if ids:
        out['id'] = rng.normal(0.0, 1.0, (n, ids, h, w)).astype(np.float32)
    planted = [(0, 0, 0), (c - 1, h - 1, w // 2), (c // 2, h // 2, w - 1), (0, h // 3, w // 3)]
    for b in range(n):
        for i, (cls, y, x) in enumerate(planted):
            out['hm'][b, cls, y, x] = 10.0 - 0.5 * i + 0.1 * b
    return out, planted


# --- the PyTorch reference (CenterNet / FairMOT structure) -------------------------------

def _reference_decode(outputs, k, ltrb=False):
    """``ctdet_decode`` (``ltrb=False``) / ``mot_decode`` (``ltrb=True``) on sigmoid
    heatmaps, plus FairMOT's identity features: F.normalize over channels, then gathered."""
    import torch
    import torch.nn.functional as F
    from centernet_pipeline import topk_peaks
    from centernet_pipeline import transpose_and_gather as _transpose_and_gather
    t = {name: torch.from_numpy(v) for name, v in outputs.items()}
    heat = torch.sigmoid(t['hm'])
    scores, inds, classes, ys, xs = topk_peaks(heat, k)
    ys, xs = ys.float().unsqueeze(2), xs.float().unsqueeze(2)
    if 'reg' in t:
        reg = _transpose_and_gather(t['reg'], inds)
        xs, ys = xs + reg[..., 0:1], ys + reg[..., 1:2]
    else:
        xs, ys = xs + 0.5, ys + 0.5
    wh = _transpose_and_gather(t['wh'], inds)
    if ltrb:
        boxes = torch.cat([xs - wh[..., 0:1], ys - wh[..., 1:2],
                           xs + wh[..., 2:3], ys + wh[..., 3:4]], 2)
    else:
        boxes = torch.cat([xs - wh[..., 0:1] / 2, ys - wh[..., 1:2] / 2,
                           xs + wh[..., 0:1] / 2, ys + wh[..., 1:2] / 2], 2)
    ids = None
    if 'id' in t:
        ids = _transpose_and_gather(F.normalize(t['id'], dim=1), inds).numpy()
    cells = inds.numpy()
    return [{'scores': scores[i].numpy(), 'classes': classes[i].numpy(), 'cells': cells[i],
             'boxes': boxes[i].numpy(), 'ids': None if ids is None else ids[i]}
            for i in range(len(cells))]


def _by_peak(det):
    """{(class, cell): row} of the detections with a positive score (the zero-score tail
    of a map with fewer than k peaks is a tie, ordered arbitrarily)."""
    return {(int(c), int(cell)): i for i, (c, cell, s) in
            enumerate(zip(det['classes'], det['cells'], det['scores'])) if s > 0}


def _ours_as_rows(outputs, k):
    """Our detections with their peak cells, in the reference's row form."""
    heat = sigmoid(outputs['hm'])
    _, _, ys, xs = heatmap_peaks(heat, k)
    w = heat.shape[3]
    return [{'scores': d.scores, 'classes': d.classes, 'cells': ys[i] * w + xs[i],
             'boxes': d.boxes, 'ids': d.embeddings}
            for i, d in enumerate(decode_detections(outputs, k))]


def _assert_same_detections(ours, reference):
    for mine, theirs in zip(ours, reference, strict=True):
        np.testing.assert_allclose(mine['scores'], theirs['scores'], rtol=1e-6, atol=1e-7)
        a, b = _by_peak(mine), _by_peak(theirs)
        assert a.keys() == b.keys()
        rows_a, rows_b = list(a.values()), [b[key] for key in a]
        np.testing.assert_allclose(mine['boxes'][rows_a], theirs['boxes'][rows_b], atol=1e-5)
        if theirs['ids'] is not None:
            np.testing.assert_allclose(mine['ids'][rows_a], theirs['ids'][rows_b], atol=1e-6)


CASES = [  # (n, classes, h, w, k)
    (2, 80, 32, 48, 100),  # COCO CenterNet, non-square
    (1, 80, 24, 24, 17),   # k smaller
    (2, 1, 40, 24, 100),   # one class, portrait
    (1, 1, 12, 12, 100),   # fewer peaks than k: a zero-score tail
    (1, 3, 64, 64, 100),   # smooth bumps, as objects make
]


@pytest.mark.torch
@pytest.mark.parametrize('n,c,h,w,k', CASES)
def test_centernet_decoding_matches_the_reference(n, c, h, w, k):
    outputs, planted = _maps(n * 1000 + c + h + w, n, c, h, w, blobs=8 if h == 64 else 0)
    ours = _ours_as_rows(outputs, k)
    _assert_same_detections(ours, _reference_decode(outputs, k))
    for d in ours:  # the planted peaks lead, in order
        assert [(int(c), int(cell)) for c, cell in zip(d['classes'][:4], d['cells'][:4])] \
            == [(cls, y * w + x) for cls, y, x in planted]


@pytest.mark.torch
def test_centernet_decoding_without_offsets_matches_the_reference():
    outputs, _ = _maps(7, 2, 20, 16, 28, reg=False)
    _assert_same_detections(_ours_as_rows(outputs, 50), _reference_decode(outputs, 50))


@pytest.mark.torch
@pytest.mark.parametrize('n,h,w,k,dim', [(2, 38, 68, 100, 64), (1, 19, 34, 30, 128)])
def test_fairmot_decoding_matches_the_reference(n, h, w, k, dim):
    outputs, _ = _maps(h * w, n, 1, h, w, wh_channels=4, ids=dim)
    ours = _ours_as_rows(outputs, k)
    _assert_same_detections(ours, _reference_decode(outputs, k, ltrb=True))
    for d in ours:
        np.testing.assert_allclose(np.linalg.norm(d['ids'], axis=1), 1.0, rtol=1e-5)


@pytest.mark.torch
def test_a_wrong_decoding_is_caught():
    """The comparison is not vacuous: offsets read x for y, or peaks without the max-pool,
    are far from the reference."""
    outputs, _ = _maps(3, 1, 1, 32, 48, blobs=12)
    reference = _reference_decode(outputs, 100)
    swapped = dict(outputs, reg=outputs['reg'][:, ::-1].copy())
    with pytest.raises(AssertionError):
        _assert_same_detections(_ours_as_rows(swapped, 100), reference)
    right, wrong = decode_detections(outputs, 100)[0], decode_detections(swapped, 100)[0]
    moved = np.abs(wrong.boxes - right.boxes)
    assert np.median(moved) > 0.05

    heat = sigmoid(outputs['hm']).reshape(-1)
    no_nms = set(np.argsort(-heat, kind='stable')[:20].tolist())
    assert len(no_nms - set(reference[0]['cells'][:20].tolist())) >= 5


# --- NumPy only ---------------------------------------------------------------------------

def test_sigmoid_is_stable_and_keeps_float32():
    x = np.array([-1000.0, -20.0, 0.0, 3.0, 1000.0], np.float32)
    with np.errstate(over='raise', invalid='raise', divide='raise'):
        y = sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 1 / (1 + np.exp(20.0)), 0.5, 1 / (1 + np.exp(-3.0)), 1.0],
                               rtol=1e-6)


def test_peaks_are_the_local_maxima_found_by_brute_force():
    rng = np.random.default_rng(11)
    heat = rng.random((2, 3, 9, 13)).astype(np.float32)
    scores, classes, ys, xs = heatmap_peaks(heat, k=3 * 9 * 13)
    for b in range(2):
        expected = {}
        for c in range(3):
            for y in range(9):
                for x in range(13):
                    window = heat[b, c, max(0, y - 1):y + 2, max(0, x - 1):x + 2]
                    if heat[b, c, y, x] == window.max():
                        expected[(c, y, x)] = heat[b, c, y, x]
        found = {(int(c), int(y), int(x)): s
                 for s, c, y, x in zip(scores[b], classes[b], ys[b], xs[b]) if s > 0}
        assert found == expected
        assert np.all(np.diff(scores[b]) <= 0)  # best first
        assert np.all(scores[b][len(found):] == 0)


def test_peaks_on_a_hand_made_map():
    heat = np.zeros((1, 2, 4, 5), np.float32)
    heat[0, 0, 1, 1] = 0.9
    heat[0, 0, 1, 2] = 0.8  # next to a higher cell: not a peak
    heat[0, 1, 3, 4] = 0.7  # in a corner
    heat[0, 1, 0, 3] = 0.95
    scores, classes, ys, xs = heatmap_peaks(heat, k=3)
    np.testing.assert_allclose(scores[0], [0.95, 0.9, 0.7])
    assert classes[0].tolist() == [1, 0, 1]
    assert ys[0].tolist() == [0, 1, 3] and xs[0].tolist() == [3, 1, 4]
    assert classes.dtype == ys.dtype == xs.dtype == np.int64
    assert heatmap_peaks(heat, k=1000)[0].shape == (1, 40)  # k capped at C * H * W
    np.testing.assert_allclose(max_pool3x3(heat)[0, 0, :3, :4],
                                  [[0.9, 0.9, 0.9, 0.8], [0.9, 0.9, 0.9, 0.8],
                                   [0.9, 0.9, 0.9, 0.8]])


def _one_peak(h=8, w=10, y=3, x=6, wh=(4.0, 2.0), reg=(0.25, 0.75), ids=None):
    logits = np.full((1, 1, h, w), -9.0, np.float32)
    logits[0, 0, y, x] = 4.0
    out = {'hm': logits, 'wh': np.zeros((1, len(wh), h, w), np.float32)}
    out['wh'][0, :, y, x] = wh
    if reg is not None:
        out['reg'] = np.zeros((1, 2, h, w), np.float32)
        out['reg'][0, :, y, x] = reg
    if ids is not None:
        out['id'] = np.ones((1, len(ids), h, w), np.float32)
        out['id'][0, :, y, x] = ids
    return out


def test_box_formulas():
    best = decode_detections(_one_peak(), k=5)[0]
    assert isinstance(best, Detections) and len(best) == 5
    np.testing.assert_allclose(best.boxes[0], [6.25 - 2, 3.75 - 1, 6.25 + 2, 3.75 + 1])
    np.testing.assert_allclose(best.scores[0], 1 / (1 + np.exp(-4.0)), rtol=1e-6)
    assert best.embeddings is None and best.classes[0] == 0
    ltrb = decode_detections(_one_peak(wh=(1.0, 2.0, 3.0, 4.0)), k=1)[0]
    np.testing.assert_allclose(ltrb.boxes[0], [6.25 - 1, 3.75 - 2, 6.25 + 3, 3.75 + 4])
    centred = decode_detections(_one_peak(reg=None), k=1)[0]
    np.testing.assert_allclose(centred.boxes[0], [6.5 - 2, 3.5 - 1, 6.5 + 2, 3.5 + 1])
    ided = decode_detections(_one_peak(ids=(3.0, 4.0)), k=2)[0]
    np.testing.assert_allclose(ided.embeddings[0], [0.6, 0.8], rtol=1e-6)


def test_threshold_and_refusals():
    outputs, _ = _maps(5, 1, 3, 16, 16, ids=8)
    d = decode_detections(outputs, k=40)[0]
    kept = d.above(0.5)
    assert len(kept) == int(np.sum(d.scores >= 0.5)) and np.all(kept.scores >= 0.5)
    assert kept.embeddings.shape == (len(kept), 8)
    with pytest.raises(DecodeError, match="no 'wh' map"):
        decode_detections({'hm': outputs['hm']})
    with pytest.raises(DecodeError, match="'reg' has shape"):
        decode_detections(dict(outputs, reg=outputs['reg'][:, :, :8]))
    with pytest.raises(DecodeError, match='3 channels'):
        decode_detections(dict(outputs, wh=np.zeros((1, 3, 16, 16), np.float32)))


def test_segmentation_argmax():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(2, 19, 6, 7)).astype(np.float32)
    classes = segment(scores)
    assert classes.shape == (2, 6, 7) and classes.dtype == np.int64
    assert np.all(np.take_along_axis(scores, classes[:, None], 1)[:, 0] == scores.max(1))


# --- input geometry -----------------------------------------------------------------------

def _photos():
    """Real photographs as FairMOT meets them: as shipped (colour, grayscale), a video frame
    stretched to 1920x1080, a portrait and a small one; 8-bit BGR as ``cv2.imread`` reads."""
    import cv2
    import skimage
    read = {n: read_bgr(os.path.join(skimage.data_dir, n))
            for n in ('chelsea.png', 'coffee.png', 'camera.png', 'rocket.jpg')}
    read['video frame'] = cv2.resize(read['coffee.png'], (1920, 1080))
    read['portrait'] = np.ascontiguousarray(np.rot90(read['chelsea.png']))
    read['small'] = cv2.resize(read['rocket.jpg'], (301, 199), interpolation=cv2.INTER_AREA)
    return read


def _fairmot_letterbox(img, height, width):
    """FairMOT's ``letterbox`` and ``LoadImages`` normalisation, from jde.py's structure."""
    import cv2
    ratio = min(float(height) / img.shape[0], float(width) / img.shape[1])
    new_shape = (round(img.shape[1] * ratio), round(img.shape[0] * ratio))
    dw, dh = (width - new_shape[0]) / 2, (height - new_shape[1]) / 2
    img = cv2.resize(img, new_shape, interpolation=cv2.INTER_AREA)
    img = cv2.copyMakeBorder(img, round(dh - 0.1), round(dh + 0.1), round(dw - 0.1),
                             round(dw + 0.1), cv2.BORDER_CONSTANT, value=(127.5, 127.5, 127.5))
    img = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)
    img /= 255.0
    return img


@pytest.mark.parametrize('input_hw', [(608, 1088), (192, 352), (320, 320)])
def test_fairmot_letterbox_is_the_references(input_hw):
    """FairMOT's input, bit for bit, on photographs of every shape; Pillow's resize (what
    the input was made with before) differs by far more than float32 rounding."""
    for name, pixels in _photos().items():
        expected = _fairmot_letterbox(pixels, *input_hw)
        got, geometry = letterbox_image(pixels, input_hw, (0, 0, 0), (1, 1, 1), 'rgb', 0.5)
        assert got.dtype == np.float32 and np.array_equal(got, expected), name
        h, w = pixels.shape[:2]
        assert geometry.center == (w / 2, h / 2)
        assert geometry.scale[0] == max(input_hw[1] / input_hw[0] * h, w)
    picture = Image.fromarray(np.ascontiguousarray(pixels[:, :, ::-1]))
    ratio = min(input_hw[0] / h, input_hw[1] / w)
    size = (round(w * ratio), round(h * ratio))
    pillow = np.asarray(picture.resize(size, Image.BILINEAR), np.float32) / 255
    top, left = round((input_hw[0] - size[1]) / 2 - 0.1), round((input_hw[1] - size[0]) / 2 - 0.1)
    window = expected[:, top:top + size[1], left:left + size[0]].transpose(1, 2, 0)
    assert np.abs(pillow - window).max() > 1e-2


def test_fairmot_letterbox_boxes_come_back():
    """A rectangle drawn at known pixels, letterboxed, written into output maps at stride 4
    as a network would, decoded and mapped back by the input's affine: the box drawn,
    within 1.5 px (the lit pixels measure the edges to an input pixel, 1.2 image px here)."""
    h, w, box = 720, 1280, (500, 200, 800, 650)
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[box[1]:box[3], box[0]:box[2]] = 255
    chw, geometry = letterbox_image(pixels, (608, 1088), (0, 0, 0), (1, 1, 1))
    lit = np.argwhere(chw[0] > 0.75)
    (y1, x1), (y2, x2) = lit.min(0), lit.max(0) + 1
    cx, cy = (x1 + x2) / 8, (y1 + y2) / 8
    x, y = int(cx), int(cy)
    outputs = _one_peak(608 // 4, 1088 // 4, y, x, wh=((x2 - x1) / 4, (y2 - y1) / 4),
                        reg=(cx - x, cy - y))
    detections = decode_detections(outputs, k=1)[0].to_image(geometry, stride=4)
    np.testing.assert_allclose(detections.boxes[0], box, atol=1.5)


def test_letterbox_pads_and_orders_channels():
    pixels = np.empty((32, 64, 3), np.uint8)
    pixels[:] = (0, 128, 255)   # BGR
    rgb, _ = letterbox_image(pixels, (64, 64), CENTERNET_MEAN, CENTERNET_STD, fill=0.0)
    bgr, _ = letterbox_image(pixels, (64, 64), CENTERNET_MEAN, CENTERNET_STD, 'bgr', 0.0)
    mean, std = np.array(CENTERNET_MEAN), np.array(CENTERNET_STD)
    np.testing.assert_allclose(rgb[:, 0, 0], -mean / std, rtol=1e-6)  # the black band
    np.testing.assert_allclose(rgb[:, 32, 32], (np.array([255, 128, 0]) / 255 - mean) / std,
                               rtol=1e-5)
    np.testing.assert_allclose(bgr[:, 32, 32], (np.array([0, 128, 255]) / 255 - mean) / std,
                               rtol=1e-5)
    grey, _ = letterbox_image(pixels, (64, 64), (0, 0, 0), (1, 1, 1))
    assert grey[0, 0, 0] * 255 == pytest.approx(128)   # FairMOT's 127.5, as OpenCV rounds it
    with pytest.raises(ValueError, match='channel_order'):
        letterbox_image(pixels, (64, 64), CENTERNET_MEAN, CENTERNET_STD, channel_order='hsv')


def test_stretch_and_class_maps_back():
    image = Image.new('RGB', (90, 30), (10, 20, 30))
    chw, stretch = stretch_image(image, (64, 128), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert chw.shape == (3, 64, 128)
    np.testing.assert_allclose(chw[:, 5, 5], (np.array([10, 20, 30]) / 255 - 0.5) / 0.25,
                               rtol=1e-5)
    classes = np.arange(8).reshape(2, 4)
    back = stretch.to_image(classes)
    assert back.shape == (30, 90)
    assert back[0, 0] == 0 and back[29, 89] == 7 and back[14, 21] == 0 and back[15, 23] == 5
    assert class_map_to_image(classes, (2, 4)).tolist() == classes.tolist()


@pytest.mark.parametrize('content', [b'', b'not an image at all', b'\x89PNG\r\n\x1a\n\x00'])
def test_unreadable_images_are_refused_naming_the_file(tmp_path, content):
    path = tmp_path / 'broken.png'
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match='cannot decode .*broken.png') as caught:
        read_bgr(path)
    assert '\n' not in str(caught.value)
    with pytest.raises(ImageReadError, match='missing.jpg: no such file'):
        stretch_image(tmp_path / 'missing.jpg', (64, 64), CENTERNET_MEAN, CENTERNET_STD)
    with pytest.raises(ImageReadError, match='not a regular file'):
        read_bgr(tmp_path)


# --- drawing ------------------------------------------------------------------------------

def _detections():
    return Detections(np.array([[10, 12, 60, 50], [30, 5, 90, 70], [1, 1, 5, 5]], np.float32),
                      np.array([0.9, 0.5, 0.1], np.float32), np.array([0, 2, 1]))


def test_draw_detections(tmp_path):
    image = Image.new('L', (120, 80), 40)  # any mode: the drawing is RGB
    drawn = draw_detections(image, _detections(), class_names=['person', 'car', 'bike'])
    assert drawn.mode == 'RGB' and drawn.size == (120, 80)
    assert image.getpixel((0, 0)) == 40  # the input is left alone
    pixels = np.asarray(drawn)
    assert tuple(pixels[30, 10]) == class_colour(0)  # left edge of the first box
    assert tuple(pixels[40, 90]) == class_colour(2)  # right edge of the second
    assert tuple(pixels[3, 3]) == (40, 40, 40)       # below the threshold: not drawn
    assert len({class_colour(i) for i in range(80)}) == 80
    path = tmp_path / 'out' / 'boxes.png'
    save_png(drawn, path)
    with Image.open(path) as saved:
        assert saved.format == 'PNG' and saved.size == (120, 80)
        assert np.array_equal(np.asarray(saved.convert('RGB')), pixels)
    assert sorted(os.listdir(path.parent)) == ['boxes.png']


def test_draw_segmentation():
    image = Image.new('RGB', (8, 4), (100, 100, 100))
    classes = np.zeros((4, 8), np.int64)
    classes[:, 4:] = 13  # car
    blended = np.asarray(draw_segmentation(image, classes, alpha=0.5))
    np.testing.assert_allclose(blended[0, 0], np.rint((100 + CITYSCAPES_PALETTE[0]) / 2), atol=1)
    np.testing.assert_allclose(blended[0, 7], np.rint((100 + CITYSCAPES_PALETTE[13]) / 2), atol=1)
    small = draw_segmentation(image, classes[::2, ::2], alpha=1.0)  # resized to the image
    assert tuple(np.asarray(small)[3, 7]) == tuple(CITYSCAPES_PALETTE[13])
    many = np.asarray(draw_segmentation(image, classes + 20, alpha=1.0))
    assert tuple(many[0, 0]) == tuple(label_palette(34)[20])
    with pytest.raises(ValueError, match='palette has 2 colours'):
        draw_segmentation(image, classes, palette=[(0, 0, 0), (1, 1, 1)])


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    image = Image.new('RGB', (16, 16))
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    with pytest.raises(OSError):
        save_png(image, blocker / 'out.png')  # the folder cannot exist
    assert sorted(os.listdir(tmp_path)) == ['a_file']

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, 'wb') as f:
            f.write(b'\x89PNG half')
        raise OSError('disk full')
    monkeypatch.setattr(Image.Image, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        save_png(image, tmp_path / 'out.png')
    assert sorted(os.listdir(tmp_path)) == ['a_file']
