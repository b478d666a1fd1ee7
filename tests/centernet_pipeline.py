"""CenterNet's test-time detection pipeline in PyTorch, written here from the structure of
the public code (``src/lib/detectors/base_detector.py`` ``pre_process``,
``detectors/ctdet.py`` ``process`` / ``post_process``, ``models/decode.py``
``ctdet_decode``, ``utils/image.py`` ``get_affine_transform`` / ``transform_preds``): the
reference that ``paddle_dla.tasks`` is held to, step by step."""
import cv2
import numpy as np
import torch
import torch.nn.functional as F

# test.py's COCO statistics, BGR.
MEAN = np.array([0.40789654, 0.44719302, 0.47026115], np.float32).reshape(1, 1, 3)
STD = np.array([0.28863828, 0.27408164, 0.27809835], np.float32).reshape(1, 1, 3)
DOWN_RATIO, PAD, K = 4, 31, 100


# --- utils/image.py ------------------------------------------------------------------------

def _rotated(point, radians):
    sin, cos = np.sin(radians), np.cos(radians)
    return [point[0] * cos - point[1] * sin, point[0] * sin + point[1] * cos]


def _third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], np.float32)


def get_affine_transform(center, scale, rot, output_size, inv=False):
    if not isinstance(scale, (np.ndarray, list)):
        scale = np.array([scale, scale], np.float32)
    src_w, (dst_w, dst_h) = scale[0], output_size
    src_dir = _rotated([0, src_w * -0.5], np.pi * rot / 180)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src, dst = np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5], np.float32) + dst_dir
    src[2], dst[2] = _third_point(src[0], src[1]), _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def transform_preds(coords, center, scale, output_size):
    back = get_affine_transform(center, scale, 0, output_size, inv=True)
    out = np.zeros(coords.shape)
    for p in range(coords.shape[0]):
        point = np.array([coords[p, 0], coords[p, 1], 1.0], np.float32)
        out[p, 0:2] = np.dot(back, point)[:2]
    return out


# --- detectors/base_detector.py pre_process --------------------------------------------------

def pre_process(image, keep_res=False, flip_test=False, input_hw=(512, 512)):
    """An 8-bit BGR image (as cv2.imread gives it) -> (input tensor, meta), at scale 1."""
    height, width = image.shape[0:2]
    if keep_res:
        inp_height, inp_width = (height | PAD) + 1, (width | PAD) + 1
        c = np.array([width // 2, height // 2], np.float32)
        s = np.array([inp_width, inp_height], np.float32)
    else:
        inp_height, inp_width = input_hw
        c = np.array([width / 2.0, height / 2.0], np.float32)
        s = max(height, width) * 1.0
    trans = get_affine_transform(c, s, 0, [inp_width, inp_height])
    resized = cv2.resize(image, (width, height))
    warped = cv2.warpAffine(resized, trans, (inp_width, inp_height), flags=cv2.INTER_LINEAR)
    warped = ((warped / 255.0 - MEAN) / STD).astype(np.float32)
    images = warped.transpose(2, 0, 1).reshape(1, 3, inp_height, inp_width)
    if flip_test:
        images = np.concatenate((images, images[:, :, :, ::-1]), axis=0)
    meta = {'c': c, 's': s, 'out_height': inp_height // DOWN_RATIO,
            'out_width': inp_width // DOWN_RATIO}
    return torch.from_numpy(np.ascontiguousarray(images)), meta


# --- models/decode.py ctdet_decode -----------------------------------------------------------

def _gather(feat, ind):
    """feat (N, M, D) read at ind (N, K) -> (N, K, D)."""
    return feat.gather(1, ind.unsqueeze(2).expand(-1, -1, feat.size(2)))


def transpose_and_gather(feat, ind):
    n, d = feat.shape[:2]
    return _gather(feat.permute(0, 2, 3, 1).reshape(n, -1, d), ind)


def topk_peaks(heat, k):
    """``_nms`` then ``_topk``: the k best cells of each class, then the k best of those."""
    heat = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
    n, c, h, w = heat.shape
    class_scores, class_inds = torch.topk(heat.view(n, c, -1), k)
    scores, ind = torch.topk(class_scores.view(n, -1), k)
    classes = torch.div(ind, k, rounding_mode='floor')
    inds = _gather(class_inds.view(n, -1, 1), ind).view(n, k)
    return scores, inds, classes, torch.div(inds, w, rounding_mode='floor'), inds % w


def ctdet_decode(heat, wh, reg=None, k=K):
    """-> (N, k, 6): x1 y1 x2 y2 score class, in output-map cells."""
    scores, inds, classes, ys, xs = topk_peaks(heat, k)
    ys, xs = ys.float().unsqueeze(2), xs.float().unsqueeze(2)
    if reg is not None:
        reg = transpose_and_gather(reg, inds)
        xs, ys = xs + reg[..., 0:1], ys + reg[..., 1:2]
    else:
        xs, ys = xs + 0.5, ys + 0.5
    wh = transpose_and_gather(wh, inds)
    boxes = torch.cat([xs - wh[..., 0:1] / 2, ys - wh[..., 1:2] / 2,
                       xs + wh[..., 0:1] / 2, ys + wh[..., 1:2] / 2], 2)
    return torch.cat([boxes, scores.unsqueeze(2), classes.float().unsqueeze(2)], 2)


# --- detectors/ctdet.py process / post_process ---------------------------------------------

def process(output, flip_test=False, k=K):
    """The network's ``{head: map}`` -> detections in output-map cells."""
    hm, wh, reg = output['hm'].sigmoid(), output['wh'], output.get('reg')
    if flip_test:
        hm = (hm[0:1] + torch.flip(hm[1:2], [3])) / 2
        wh = (wh[0:1] + torch.flip(wh[1:2], [3])) / 2
        reg = reg[0:1] if reg is not None else None
    return ctdet_decode(hm, wh, reg, k)


def post_process(dets, meta):
    """(1, k, 6) -> (k, 6) with both corners in the image's pixels (not clipped)."""
    dets = dets.detach().cpu().numpy().reshape(1, -1, 6).copy()
    out_size = (meta['out_width'], meta['out_height'])
    dets[0, :, 0:2] = transform_preds(dets[0, :, 0:2], meta['c'], meta['s'], out_size)
    dets[0, :, 2:4] = transform_preds(dets[0, :, 2:4], meta['c'], meta['s'], out_size)
    return dets[0]


def detect(model, path, keep_res=False, flip_test=False, k=K, input_hw=(512, 512)):
    """``cv2.imread`` -> pre_process -> the model -> process -> post_process: (k, 6) rows
    x1 y1 x2 y2 score class in the image's pixels, best first. ``input_hw``: the network
    input (the reference's --input_res)."""
    image = cv2.imread(str(path))
    images, meta = pre_process(image, keep_res, flip_test, input_hw)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        output = model(images.to(dtype))
    return post_process(process({k_: v.float() for k_, v in output.items()}, flip_test, k),
                        meta)


# --- CenterNet's evaluation: coco.py convert_eval_format and run_eval --------------------------

def _to_float(x):
    return float('{:.2f}'.format(x))


def convert_eval_format(detections_by_image, valid_ids):
    """``{image_id: (k, 6) rows}`` -> COCO results, boxes [x, y, w, h] and scores to two
    decimals, category ``valid_ids[class]``."""
    records = []
    for image_id, rows in detections_by_image.items():
        for x1, y1, x2, y2, score, label in rows:
            bbox = [x1, y1, x2 - x1, y2 - y1]
            records.append({'image_id': int(image_id), 'category_id': int(valid_ids[int(label)]),
                            'bbox': list(map(_to_float, bbox)), 'score': _to_float(score)})
    return records


def run_eval(annotation_path, records):
    """pycocotools' bbox COCOeval of ``records``: its 12 stats."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    truth = COCO(annotation_path)
    evaluation = COCOeval(truth, truth.loadRes(records), 'bbox')
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return np.asarray(evaluation.stats)
