"""FairMOT's online tracker (``JDETracker.update`` after the network): detections with
their identity embeddings in, confirmed tracks out, frame by frame.

Each frame: detections above the confidence threshold; the confirmed and lost tracks
predicted one frame ahead (a lost track's height velocity zeroed); a first association on
the cosine distance of each track's smoothed embedding, fused with the Kalman filter's
Mahalanobis gate (limit 0.4); a second on IoU for the tracked ones left (limit 0.5), the
rest marked lost; tracks seen once matched by IoU (limit 0.7) or dropped; new tracks from
the detections left; lost tracks dropped after ``frame_rate / 30 * track_buffer`` frames;
a tracked and a lost track overlapping at IoU > 0.85 resolved in favour of the older.

The reference's bookkeeping is kept where it decides an outcome: a track dropped for being
lost too long stays among the lost (and can be found again) for one more frame, and a
track once dropped is taken off the lost list at once should it be lost again."""
from dataclasses import dataclass

import numpy as np

from . import kalman
from .matching import assign, cosine_cost, fuse_motion, iou_cost

EMBEDDING_LIMIT = 0.4
IOU_LIMIT = 0.5
UNCONFIRMED_IOU_LIMIT = 0.7
DUPLICATE_IOU_COST = 0.15
SMOOTHING = 0.9   # weight of a track's past embedding against the new one

_TRACKED, _LOST, _REMOVED = 'tracked', 'lost', 'removed'


@dataclass(frozen=True)
class Track:
    """A confirmed track in one frame: its id (from 1), box (x, y, w, h) in the frame's
    pixels (the Kalman filter's estimate) and its last matched detection's score."""

    track_id: int
    tlwh: np.ndarray
    score: float


def _unit(vector):
    return vector / np.linalg.norm(vector)


def _xyah(tlwh):
    x, y, w, h = tlwh
    return np.array([x + w / 2, y + h / 2, w / h, h])


class _Tracklet:
    """One detection, and later the track it starts."""

    def __init__(self, tlwh, score, feature):
        self.box = tlwh               # the detection's box, until the filter holds one
        self.score = score
        # The first smoothing step normalises the same array twice, in place.
        self.feature = self.smooth = _unit(_unit(feature))
        self.mean = self.covariance = None
        self.track_id = 0
        self.state = None
        self.confirmed = False
        self.frame_id = self.start_frame = 0

    @property
    def tlwh(self):
        if self.mean is None:
            return self.box.copy()
        x, y, aspect, h = self.mean[:4]
        w = aspect * h
        return np.array([x - w / 2, y - h / 2, w, h])

    @property
    def tlbr(self):
        box = self.tlwh
        box[2:] += box[:2]
        return box

    def start(self, track_id, frame_id):
        self.track_id = track_id
        self.mean, self.covariance = kalman.initiate(_xyah(self.box))
        self.state = _TRACKED
        self.confirmed = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def absorb(self, detection, frame_id, keep_score=False):
        """Matched to ``detection`` in ``frame_id``: the filter corrected, the embedding
        smoothed; a track found again keeps its score."""
        self.mean, self.covariance = kalman.update(self.mean, self.covariance,
                                                   _xyah(detection.tlwh))
        feature = self.feature = _unit(detection.feature)
        self.smooth = _unit(SMOOTHING * self.smooth + (1 - SMOOTHING) * feature)
        if not keep_score:
            self.score = detection.score
        self.state = _TRACKED
        self.confirmed = True
        self.frame_id = frame_id


class JDETracker:
    """FairMOT's tracker over detections from any detector: ``update(detections,
    embeddings)`` once a frame, in frame order. ``conf_thres``: detections scoring at or
    below it are ignored; ``track_buffer``: frames (at 30 fps) a lost track is kept."""

    def __init__(self, frame_rate=30, conf_thres=0.4, track_buffer=30):
        if frame_rate <= 0:
            raise ValueError(f'frame_rate must be positive, not {frame_rate}')
        self.conf_thres = conf_thres
        self.max_time_lost = int(frame_rate / 30.0 * track_buffer)
        self.frame_id = 0
        self._tracked = []
        self._lost = []
        self._removed_ids = set()
        self._last_id = 0

    def update(self, detections, embeddings):
        """One frame: ``detections`` (N, 5) x1 y1 x2 y2 score in frame pixels, best first;
        ``embeddings`` (N, D) -> the confirmed tracks (list of :class:`Track`)."""
        detections, embeddings = _checked(detections, embeddings)
        self.frame_id += 1
        frame = self.frame_id
        keep = detections[:, 4] > self.conf_thres
        found = [_Tracklet(_tlwh(row[:4]), row[4], feature)
                 for row, feature in zip(detections[keep], embeddings[keep])]

        unconfirmed = [t for t in self._tracked if not t.confirmed]
        pool = _joined([t for t in self._tracked if t.confirmed], self._lost)
        _predict(pool)
        updated, refound, newly_lost, dropped = [], [], [], []

        # 1: appearance with motion gating.
        cost = cosine_cost([t.smooth for t in pool], [d.feature for d in found])
        if cost.size:
            cost = fuse_motion(cost, [t.mean for t in pool], [t.covariance for t in pool],
                               np.array([_xyah(d.tlwh) for d in found]))
        matches, left_tracks, left = assign(cost, EMBEDDING_LIMIT)
        for row, col in matches:
            track = pool[row]
            tracked = track.state == _TRACKED
            track.absorb(found[col], frame, keep_score=not tracked)
            (updated if tracked else refound).append(track)

        # 2: overlap, for the tracked ones left; the unmatched are lost.
        found = [found[i] for i in left]
        remaining = [pool[i] for i in left_tracks if pool[i].state == _TRACKED]
        unmatched, left = _overlap_round(remaining, found, IOU_LIMIT, frame, updated)
        for track in unmatched:
            track.state = _LOST
            newly_lost.append(track)

        # 3: tracks seen once, by overlap; the unmatched go.
        found = [found[i] for i in left]
        unmatched, left = _overlap_round(unconfirmed, found, UNCONFIRMED_IOU_LIMIT, frame,
                                         updated)
        for track in unmatched:
            track.state = _REMOVED
            dropped.append(track)

        # 4: new tracks.
        for i in left:
            if found[i].score >= self.conf_thres:
                self._last_id += 1
                found[i].start(self._last_id, frame)
                updated.append(found[i])

        # 5: lost too long.
        for track in self._lost:
            if frame - track.frame_id > self.max_time_lost:
                track.state = _REMOVED
                dropped.append(track)

        tracked = [t for t in self._tracked if t.state == _TRACKED]
        tracked = _joined(_joined(tracked, updated), refound)
        lost = _without(self._lost, {t.track_id for t in tracked}) + newly_lost
        lost = _without(lost, self._removed_ids)
        self._removed_ids.update(t.track_id for t in dropped)
        self._tracked, self._lost = _without_duplicates(tracked, lost)
        return [Track(t.track_id, t.tlwh, float(t.score)) for t in self._tracked if t.confirmed]


def _checked(detections, embeddings):
    detections = _floating(detections, 'detections')
    embeddings = _floating(embeddings, 'embeddings')
    if detections.ndim != 2 or detections.shape[1] != 5:
        raise ValueError(f'detections are (N, 5): x1 y1 x2 y2 score, not {detections.shape}')
    if embeddings.ndim != 2 or len(embeddings) != len(detections):
        raise ValueError(f'embeddings are (N, D), one per detection: {embeddings.shape} for '
                         f'{len(detections)} detections')
    return detections, embeddings


def _floating(array, name):
    array = np.array(array, copy=True)
    if array.size == 0 and array.ndim < 2:
        array = array.reshape(0, 5 if name == 'detections' else 0)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def _tlwh(tlbr):
    """x1 y1 x2 y2 -> x y w h, subtracted in the detections' own precision."""
    box = tlbr.copy()
    box[2:] -= box[:2]
    return box.astype(np.float64)


def _predict(tracks):
    if not tracks:
        return
    means = np.array([t.mean for t in tracks])
    for i, track in enumerate(tracks):
        if track.state != _TRACKED:
            means[i, 7] = 0   # a track out of sight stops growing or shrinking
    means, covariances = kalman.predict(means, np.array([t.covariance for t in tracks]))
    for track, mean, covariance in zip(tracks, means, covariances):
        track.mean, track.covariance = mean, covariance


def _overlap_round(tracks, found, limit, frame, updated):
    """Match ``tracks`` to detections ``found`` by IoU cost under ``limit``; each matched
    track absorbs its detection and joins ``updated``. -> (the unmatched tracks, indices of
    the unmatched detections)."""
    matches, left_tracks, left = assign(_iou_cost(tracks, found), limit)
    for row, col in matches:
        tracks[row].absorb(found[col], frame)
        updated.append(tracks[row])
    return [tracks[row] for row in left_tracks], left


def _iou_cost(tracks_a, tracks_b):
    return iou_cost([t.tlbr for t in tracks_a], [t.tlbr for t in tracks_b])


def _joined(first, second):
    """``first``, then those of ``second`` whose ids it lacks."""
    ids = {t.track_id for t in first}
    joined = list(first)
    for track in second:
        if track.track_id not in ids:
            ids.add(track.track_id)
            joined.append(track)
    return joined


def _without(tracks, ids):
    """``tracks`` once per id, less those whose ids are in ``ids``."""
    by_id = {}
    for track in tracks:
        by_id[track.track_id] = track
    return [t for track_id, t in by_id.items() if track_id not in ids]


def _without_duplicates(tracked, lost):
    """A tracked and a lost track over the same object: the one followed longer stays
    (the tracked one goes when they are equal)."""
    cost = _iou_cost(tracked, lost)
    drop_tracked, drop_lost = set(), set()
    for p, q in zip(*np.nonzero(cost < DUPLICATE_IOU_COST)):
        if (tracked[p].frame_id - tracked[p].start_frame
                > lost[q].frame_id - lost[q].start_frame):
            drop_lost.add(q)
        else:
            drop_tracked.add(p)
    return ([t for i, t in enumerate(tracked) if i not in drop_tracked],
            [t for i, t in enumerate(lost) if i not in drop_lost])
