"""The costs FairMOT associates tracks and detections by, and the assignment itself:
IoU counted in whole pixels (areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, as ``cython_bbox``
counts them), cosine distances of embeddings fused with the Kalman filter's Mahalanobis
gate, and ``lap.lapjv`` with a cost limit (a pair dearer than the limit stays apart)."""
import lap
import numpy as np

from . import kalman

APPEARANCE_WEIGHT = 0.98    # FairMOT's fuse_motion lambda; the motion cost has the rest


def iou(boxes_a, boxes_b):
    """IoU (A, B) of x1 y1 x2 y2 boxes, the +1 pixel convention; float64."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    inter_w = (np.minimum(a[:, None, 2], b[None, :, 2])
               - np.maximum(a[:, None, 0], b[None, :, 0]) + 1)
    inter_h = (np.minimum(a[:, None, 3], b[None, :, 3])
               - np.maximum(a[:, None, 1], b[None, :, 1]) + 1)
    overlap = (inter_w > 0) & (inter_h > 0)
    inter = np.where(overlap, inter_w * inter_h, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def iou_cost(boxes_a, boxes_b):
    return 1.0 - iou(boxes_a, boxes_b)


def cosine_cost(track_features, detection_features):
    """Cosine distances (T, D) -> (T, N), float64, never below 0."""
    t = np.asarray(track_features, np.float64)
    d = np.asarray(detection_features, np.float64)
    if not len(t) or not len(d):
        return np.zeros((len(t), len(d)))
    similarity = (t @ d.T) / np.outer(np.linalg.norm(t, axis=1), np.linalg.norm(d, axis=1))
    return np.maximum(0.0, 1.0 - similarity)


def fuse_motion(cost, means, covariances, detection_xyah):
    """The appearance cost with each track's Mahalanobis distance to every detection mixed
    in (weight 1 - 0.98), and pairs outside the 95 % gate made impossible (inf)."""
    fused = np.array(cost, np.float64)
    if not fused.size:
        return fused
    distance = kalman.mahalanobis_squared(means, covariances, detection_xyah)
    gated = np.where(distance > kalman.GATE_4DOF, np.inf, fused)
    return APPEARANCE_WEIGHT * gated + (1 - APPEARANCE_WEIGHT) * distance


def assign(cost, limit):
    """Minimum-cost matching with pairs dearer than ``limit`` refused:
    (matches [(row, col), ...], unmatched rows, unmatched cols), all in index order."""
    cost = np.asarray(cost, np.float64)
    rows, cols = cost.shape
    if not cost.size:
        return [], list(range(rows)), list(range(cols))
    _, col_of_row, row_of_col = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
    matches = [(r, int(c)) for r, c in enumerate(col_of_row) if c >= 0]
    return (matches, [r for r in range(rows) if col_of_row[r] < 0],
            [c for c in range(cols) if row_of_col[c] < 0])
