"""FairMOT's test-time steps around the network, written here from the structure of the
public code (``src/lib/datasets/dataset/jde.py`` ``letterbox``, ``LoadImages`` /
``LoadVideo``; ``src/lib/tracker/multitracker.py`` ``JDETracker.update`` up to the
association; ``src/track.py`` ``eval_seq`` and ``write_results``): the reference that
``paddle_dla``'s tracking pipeline is held to. PyTorch is imported only by the steps that
run the network."""
import glob
import os

import cv2
import numpy as np

INPUT_W, INPUT_H = 1088, 608
VIDEO_W, VIDEO_H = 1920, 1080
DOWN_RATIO, K, CONF_THRES, MIN_BOX_AREA = 4, 500, 0.4, 100


# --- datasets/dataset/jde.py ---------------------------------------------------------------

def letterbox(img, height=INPUT_H, width=INPUT_W, color=(127.5, 127.5, 127.5)):
    shape = img.shape[:2]
    ratio = min(float(height) / shape[0], float(width) / shape[1])
    new_shape = (round(shape[1] * ratio), round(shape[0] * ratio))
    dw, dh = (width - new_shape[0]) / 2, (height - new_shape[1]) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.resize(img, new_shape, interpolation=cv2.INTER_AREA)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return img, ratio, dw, dh


def network_input(img0):
    """``LoadImages.__next__`` after ``cv2.imread``: letterboxed, RGB, CHW, float32 / 255."""
    img, _, _, _ = letterbox(img0)
    img = img[:, :, ::-1].transpose(2, 0, 1)
    img = np.ascontiguousarray(img, dtype=np.float32)
    img /= 255.0
    return img


def load_images(path):
    """``LoadImages``: the folder's .jpg/.jpeg/.png/.tif files, sorted -> (path, img, img0)."""
    files = sorted(glob.glob('%s/*.*' % path))
    files = [f for f in files if os.path.splitext(f)[1].lower() in ('.jpg', '.jpeg', '.png',
                                                                     '.tif')]
    for name in files:
        img0 = cv2.imread(name)
        yield name, network_input(img0), img0


def load_video(path):
    """``LoadVideo``: every frame stretched to 1920x1080 -> (index, img, img0); and the
    frame rate it reports."""
    cap = cv2.VideoCapture(path)
    frame_rate = int(round(cap.get(cv2.CAP_PROP_FPS)))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))

    def frames():
        for i in range(count):
            _, img0 = cap.read()
            img0 = cv2.resize(img0, (VIDEO_W, VIDEO_H))
            yield i, network_input(img0), img0
    return frame_rate, frames()


# --- tracker/multitracker.py JDETracker.update, step 1 -------------------------------------

def detect(model, img, img0):
    """The network and ``mot_decode`` -> ``post_process`` -> ``merge_outputs`` -> the
    confidence cut: (dets (N, 5) x1 y1 x2 y2 score in img0's pixels, id features (N, D))."""
    import torch
    import torch.nn.functional as F
    from centernet_pipeline import topk_peaks, transform_preds, transpose_and_gather
    height, width = img0.shape[:2]
    inp_height, inp_width = img.shape[1:]
    c = np.array([width / 2., height / 2.], dtype=np.float32)
    s = max(float(inp_width) / float(inp_height) * height, width) * 1.0
    out_h, out_w = inp_height // DOWN_RATIO, inp_width // DOWN_RATIO
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        output = model(torch.from_numpy(img).unsqueeze(0).to(dtype))
        output = {k: v.float() for k, v in output.items()}
        hm = output['hm'].sigmoid_()
        id_feature = F.normalize(output['id'], dim=1)
        scores, inds, _, ys, xs = topk_peaks(hm, K)
        reg = transpose_and_gather(output['reg'], inds)
        xs = xs.view(1, K, 1).float() + reg[:, :, 0:1]
        ys = ys.view(1, K, 1).float() + reg[:, :, 1:2]
        wh = transpose_and_gather(output['wh'], inds).view(1, K, 4)
        boxes = torch.cat([xs - wh[..., 0:1], ys - wh[..., 1:2], xs + wh[..., 2:3],
                           ys + wh[..., 3:4]], dim=2)
        id_feature = transpose_and_gather(id_feature, inds).squeeze(0).cpu().numpy()
    dets = torch.cat([boxes, scores.view(1, K, 1)], dim=2)[0].numpy().copy()
    dets[:, 0:2] = transform_preds(dets[:, 0:2], c, s, (out_w, out_h))
    dets[:, 2:4] = transform_preds(dets[:, 2:4], c, s, (out_w, out_h))
    dets = dets.astype(np.float32)
    keep = dets[:, 4] > CONF_THRES
    return dets[keep], id_feature[keep]


# --- track.py eval_seq and write_results ---------------------------------------------------

def kept(tlwh):
    """``eval_seq``'s filter: more than 100 square pixels, and not wider than 1.6 x high."""
    return tlwh[2] * tlwh[3] > MIN_BOX_AREA and not tlwh[2] / tlwh[3] > 1.6


def track(model, frames, tracker):
    """``eval_seq``: [(frame from 1, [tlwh], [id], [score])] for frames of (_, img, img0)."""
    results = []
    for frame_id, (_, img, img0) in enumerate(frames):
        dets, features = detect(model, img, img0)
        online = [t for t in tracker.update(dets, features) if kept(t.tlwh)]
        results.append((frame_id + 1, [t.tlwh for t in online], [t.track_id for t in online],
                        [float(t.score) for t in online]))
    return results
