"""FairMOT's tracker as its public code runs it (``tracker/multitracker.py``,
``tracker/matching.py``, ``tracker/basetrack.py``, ``tracking_utils/kalman_filter.py``),
step by step and object by object, with the network step taken out: ``update`` takes the
frame's decoded detections and embeddings. ``cython_bbox.bbox_overlaps`` is written out in
NumPy (areas in whole pixels, ``+ 1``); the assignment is ``lap.lapjv`` as there. The id
counter is a class attribute as in ``BaseTrack``; ``reset_ids`` starts it again."""
from collections import Counter, deque

import lap
import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist

CHI2INV95_4 = 9.4877
NEW, TRACKED, LOST, REMOVED = 0, 1, 2, 3


class KalmanFilter:
    def __init__(self):
        ndim, dt = 4, 1.0
        self._motion_mat = np.eye(2 * ndim, 2 * ndim)
        for i in range(ndim):
            self._motion_mat[i, ndim + i] = dt
        self._update_mat = np.eye(ndim, 2 * ndim)
        self._std_weight_position = 1.0 / 20
        self._std_weight_velocity = 1.0 / 160

    def initiate(self, measurement):
        mean = np.r_[measurement, np.zeros_like(measurement)]
        p, v = self._std_weight_position, self._std_weight_velocity
        std = [2 * p * measurement[3], 2 * p * measurement[3], 1e-2, 2 * p * measurement[3],
               10 * v * measurement[3], 10 * v * measurement[3], 1e-5, 10 * v * measurement[3]]
        return mean, np.diag(np.square(std))

    def multi_predict(self, mean, covariance):
        p, v = self._std_weight_position, self._std_weight_velocity
        std_pos = [p * mean[:, 3], p * mean[:, 3], 1e-2 * np.ones_like(mean[:, 3]), p * mean[:, 3]]
        std_vel = [v * mean[:, 3], v * mean[:, 3], 1e-5 * np.ones_like(mean[:, 3]), v * mean[:, 3]]
        sqr = np.square(np.r_[std_pos, std_vel]).T
        motion_cov = np.asarray([np.diag(sqr[i]) for i in range(len(mean))])
        mean = np.dot(mean, self._motion_mat.T)
        left = np.dot(self._motion_mat, covariance).transpose((1, 0, 2))
        covariance = np.dot(left, self._motion_mat.T) + motion_cov
        return mean, covariance

    def project(self, mean, covariance):
        p = self._std_weight_position
        innovation_cov = np.diag(np.square([p * mean[3], p * mean[3], 1e-1, p * mean[3]]))
        mean = np.dot(self._update_mat, mean)
        covariance = np.linalg.multi_dot((self._update_mat, covariance, self._update_mat.T))
        return mean, covariance + innovation_cov

    def update(self, mean, covariance, measurement):
        projected_mean, projected_cov = self.project(mean, covariance)
        chol_factor, lower = scipy.linalg.cho_factor(projected_cov, lower=True,
                                                     check_finite=False)
        kalman_gain = scipy.linalg.cho_solve((chol_factor, lower),
                                             np.dot(covariance, self._update_mat.T).T,
                                             check_finite=False).T
        innovation = measurement - projected_mean
        new_mean = mean + np.dot(innovation, kalman_gain.T)
        new_covariance = covariance - np.linalg.multi_dot((kalman_gain, projected_cov,
                                                           kalman_gain.T))
        return new_mean, new_covariance

    def gating_distance(self, mean, covariance, measurements):
        mean, covariance = self.project(mean, covariance)
        d = measurements - mean
        cholesky_factor = np.linalg.cholesky(covariance)
        z = scipy.linalg.solve_triangular(cholesky_factor, d.T, lower=True, check_finite=False,
                                          overwrite_b=True)
        return np.sum(z * z, axis=0)


def bbox_overlaps(boxes, query_boxes):
    """cython_bbox's loop: areas and intersections in whole pixels (+ 1)."""
    n, k = boxes.shape[0], query_boxes.shape[0]
    overlaps = np.zeros((n, k), dtype=np.float64)
    for kk in range(k):
        box_area = ((query_boxes[kk, 2] - query_boxes[kk, 0] + 1)
                    * (query_boxes[kk, 3] - query_boxes[kk, 1] + 1))
        for nn in range(n):
            iw = (min(boxes[nn, 2], query_boxes[kk, 2]) - max(boxes[nn, 0], query_boxes[kk, 0])
                  + 1)
            if iw > 0:
                ih = (min(boxes[nn, 3], query_boxes[kk, 3])
                      - max(boxes[nn, 1], query_boxes[kk, 1]) + 1)
                if ih > 0:
                    ua = float((boxes[nn, 2] - boxes[nn, 0] + 1) * (boxes[nn, 3] - boxes[nn, 1] + 1)
                               + box_area - iw * ih)
                    overlaps[nn, kk] = iw * ih / ua
    return overlaps


def linear_assignment(cost_matrix, thresh):
    if cost_matrix.size == 0:
        return (np.empty((0, 2), dtype=int), tuple(range(cost_matrix.shape[0])),
                tuple(range(cost_matrix.shape[1])))
    matches = []
    _, x, y = lap.lapjv(cost_matrix, extend_cost=True, cost_limit=thresh)
    for ix, mx in enumerate(x):
        if mx >= 0:
            matches.append([ix, mx])
    return np.asarray(matches), np.where(x < 0)[0], np.where(y < 0)[0]


def iou_distance(atracks, btracks):
    atlbrs = [t.tlbr for t in atracks]
    btlbrs = [t.tlbr for t in btracks]
    ious = np.zeros((len(atlbrs), len(btlbrs)), dtype=np.float64)
    if ious.size:
        ious = bbox_overlaps(np.ascontiguousarray(atlbrs, dtype=np.float64),
                             np.ascontiguousarray(btlbrs, dtype=np.float64))
    return 1 - ious


def embedding_distance(tracks, detections):
    cost_matrix = np.zeros((len(tracks), len(detections)), dtype=np.float64)
    if cost_matrix.size == 0:
        return cost_matrix
    det_features = np.asarray([t.curr_feat for t in detections], dtype=np.float64)
    track_features = np.asarray([t.smooth_feat for t in tracks], dtype=np.float64)
    return np.maximum(0.0, cdist(track_features, det_features, 'cosine'))


def fuse_motion(kf, cost_matrix, tracks, detections, lambda_=0.98):
    if cost_matrix.size == 0:
        return cost_matrix
    measurements = np.asarray([det.to_xyah() for det in detections])
    for row, track in enumerate(tracks):
        gating_distance = kf.gating_distance(track.mean, track.covariance, measurements)
        cost_matrix[row, gating_distance > CHI2INV95_4] = np.inf
        cost_matrix[row] = lambda_ * cost_matrix[row] + (1 - lambda_) * gating_distance
    return cost_matrix


class STrack:
    _count = 0
    shared_kalman = KalmanFilter()

    def __init__(self, tlwh, score, temp_feat, buffer_size=30):
        self._tlwh = np.asarray(tlwh, dtype=np.float64)
        self.kalman_filter = None
        self.mean, self.covariance = None, None
        self.is_activated = False
        self.track_id = 0
        self.state = NEW
        self.frame_id = self.start_frame = 0
        self.score = score
        self.tracklet_len = 0
        self.smooth_feat = None
        self.update_features(temp_feat)
        self.features = deque([], maxlen=buffer_size)
        self.alpha = 0.9

    @staticmethod
    def next_id():
        STrack._count += 1
        return STrack._count

    @property
    def end_frame(self):
        return self.frame_id

    def update_features(self, feat):
        feat /= np.linalg.norm(feat)
        self.curr_feat = feat
        if self.smooth_feat is None:
            self.smooth_feat = feat
        else:
            self.smooth_feat = self.alpha * self.smooth_feat + (1 - self.alpha) * feat
        self.smooth_feat /= np.linalg.norm(self.smooth_feat)

    @staticmethod
    def multi_predict(stracks):
        if len(stracks) > 0:
            multi_mean = np.asarray([st.mean.copy() for st in stracks])
            multi_covariance = np.asarray([st.covariance for st in stracks])
            for i, st in enumerate(stracks):
                if st.state != TRACKED:
                    multi_mean[i][7] = 0
            multi_mean, multi_covariance = STrack.shared_kalman.multi_predict(multi_mean,
                                                                              multi_covariance)
            for i, (mean, cov) in enumerate(zip(multi_mean, multi_covariance)):
                stracks[i].mean = mean
                stracks[i].covariance = cov

    def activate(self, kalman_filter, frame_id):
        self.kalman_filter = kalman_filter
        self.track_id = self.next_id()
        self.mean, self.covariance = self.kalman_filter.initiate(self.tlwh_to_xyah(self._tlwh))
        self.tracklet_len = 0
        self.state = TRACKED
        if frame_id == 1:
            self.is_activated = True
        self.frame_id = frame_id
        self.start_frame = frame_id

    def re_activate(self, new_track, frame_id):
        self.mean, self.covariance = self.kalman_filter.update(
            self.mean, self.covariance, self.tlwh_to_xyah(new_track.tlwh))
        self.update_features(new_track.curr_feat)
        self.tracklet_len = 0
        self.state = TRACKED
        self.is_activated = True
        self.frame_id = frame_id

    def update(self, new_track, frame_id):
        self.frame_id = frame_id
        self.tracklet_len += 1
        self.mean, self.covariance = self.kalman_filter.update(
            self.mean, self.covariance, self.tlwh_to_xyah(new_track.tlwh))
        self.state = TRACKED
        self.is_activated = True
        self.score = new_track.score
        self.update_features(new_track.curr_feat)

    @property
    def tlwh(self):
        if self.mean is None:
            return self._tlwh.copy()
        ret = self.mean[:4].copy()
        ret[2] *= ret[3]
        ret[:2] -= ret[2:] / 2
        return ret

    @property
    def tlbr(self):
        ret = self.tlwh.copy()
        ret[2:] += ret[:2]
        return ret

    @staticmethod
    def tlwh_to_xyah(tlwh):
        ret = np.asarray(tlwh).copy()
        ret[:2] += ret[2:] / 2
        ret[2] /= ret[3]
        return ret

    def to_xyah(self):
        return self.tlwh_to_xyah(self.tlwh)

    @staticmethod
    def tlbr_to_tlwh(tlbr):
        ret = np.asarray(tlbr).copy()
        ret[2:] -= ret[:2]
        return ret


def reset_ids():
    STrack._count = 0


class JDETracker:
    def __init__(self, frame_rate=30, conf_thres=0.4, track_buffer=30):
        self.tracked_stracks, self.lost_stracks, self.removed_stracks = [], [], []
        self.frame_id = 0
        self.det_thresh = conf_thres
        self.conf_thres = conf_thres
        self.buffer_size = int(frame_rate / 30.0 * track_buffer)
        self.max_time_lost = self.buffer_size
        self.kalman_filter = KalmanFilter()
        self.events = Counter()  # which branches ran, for the tests to show coverage

    def update(self, dets, id_feature):
        """``dets`` (N, 5) float32 after ctdet_post_process and merge_outputs;
        ``id_feature`` (N, D) float32: the rest of ``JDETracker.update``."""
        self.frame_id += 1
        activated_starcks, refind_stracks, lost_stracks, removed_stracks = [], [], [], []
        dets = np.array(dets, copy=True)
        id_feature = np.array(id_feature, copy=True)
        remain_inds = dets[:, 4] > self.conf_thres
        self.events['under threshold'] += int((~remain_inds).sum())
        dets = dets[remain_inds]
        id_feature = id_feature[remain_inds]
        if len(dets) > 0:
            detections = [STrack(STrack.tlbr_to_tlwh(tlbrs[:4]), tlbrs[4], f, 30)
                          for (tlbrs, f) in zip(dets[:, :5], id_feature)]
        else:
            detections = []

        unconfirmed, tracked_stracks = [], []
        for track in self.tracked_stracks:
            (tracked_stracks if track.is_activated else unconfirmed).append(track)

        strack_pool = joint_stracks(tracked_stracks, self.lost_stracks)
        STrack.multi_predict(strack_pool)
        dists = embedding_distance(strack_pool, detections)
        dists = fuse_motion(self.kalman_filter, dists, strack_pool, detections)
        self.events['gated'] += int(np.isinf(dists).sum())
        matches, u_track, u_detection = linear_assignment(dists, thresh=0.4)
        for itracked, idet in matches:
            track = strack_pool[itracked]
            det = detections[idet]
            if track.state == TRACKED:
                track.update(det, self.frame_id)
                activated_starcks.append(track)
                self.events['embedding match'] += 1
            else:
                self.events['refound' if track.state == LOST else 'refound after removal'] += 1
                track.re_activate(det, self.frame_id)
                refind_stracks.append(track)

        detections = [detections[i] for i in u_detection]
        r_tracked_stracks = [strack_pool[i] for i in u_track if strack_pool[i].state == TRACKED]
        dists = iou_distance(r_tracked_stracks, detections)
        matches, u_track, u_detection = linear_assignment(dists, thresh=0.5)
        for itracked, idet in matches:
            track = r_tracked_stracks[itracked]
            det = detections[idet]
            if track.state == TRACKED:
                track.update(det, self.frame_id)
                activated_starcks.append(track)
                self.events['iou match'] += 1
            else:
                track.re_activate(det, self.frame_id)
                refind_stracks.append(track)
        for it in u_track:
            track = r_tracked_stracks[it]
            if not track.state == LOST:
                track.state = LOST
                lost_stracks.append(track)
                self.events['lost'] += 1

        detections = [detections[i] for i in u_detection]
        dists = iou_distance(unconfirmed, detections)
        matches, u_unconfirmed, u_detection = linear_assignment(dists, thresh=0.7)
        for itracked, idet in matches:
            unconfirmed[itracked].update(detections[idet], self.frame_id)
            activated_starcks.append(unconfirmed[itracked])
            self.events['confirmed'] += 1
        for it in u_unconfirmed:
            track = unconfirmed[it]
            track.state = REMOVED
            removed_stracks.append(track)
            self.events['unconfirmed removed'] += 1

        for inew in u_detection:
            track = detections[inew]
            if track.score < self.det_thresh:
                continue
            track.activate(self.kalman_filter, self.frame_id)
            activated_starcks.append(track)
            self.events['new'] += 1
        for track in self.lost_stracks:
            if self.frame_id - track.end_frame > self.max_time_lost:
                track.state = REMOVED
                removed_stracks.append(track)
                self.events['timed out'] += 1

        self.tracked_stracks = [t for t in self.tracked_stracks if t.state == TRACKED]
        self.tracked_stracks = joint_stracks(self.tracked_stracks, activated_starcks)
        self.tracked_stracks = joint_stracks(self.tracked_stracks, refind_stracks)
        self.lost_stracks = sub_stracks(self.lost_stracks, self.tracked_stracks)
        self.lost_stracks.extend(lost_stracks)
        self.lost_stracks = sub_stracks(self.lost_stracks, self.removed_stracks)
        self.removed_stracks.extend(removed_stracks)
        before = len(self.tracked_stracks), len(self.lost_stracks)
        self.tracked_stracks, self.lost_stracks = remove_duplicate_stracks(self.tracked_stracks,
                                                                           self.lost_stracks)
        self.events['duplicate tracked dropped'] += before[0] - len(self.tracked_stracks)
        self.events['duplicate lost dropped'] += before[1] - len(self.lost_stracks)
        return [track for track in self.tracked_stracks if track.is_activated]


def joint_stracks(tlista, tlistb):
    exists, res = {}, []
    for t in tlista:
        exists[t.track_id] = 1
        res.append(t)
    for t in tlistb:
        if not exists.get(t.track_id, 0):
            exists[t.track_id] = 1
            res.append(t)
    return res


def sub_stracks(tlista, tlistb):
    stracks = {}
    for t in tlista:
        stracks[t.track_id] = t
    for t in tlistb:
        if stracks.get(t.track_id, 0):
            del stracks[t.track_id]
    return list(stracks.values())


def remove_duplicate_stracks(stracksa, stracksb):
    pdist = iou_distance(stracksa, stracksb)
    pairs = np.where(pdist < 0.15)
    dupa, dupb = [], []
    for p, q in zip(*pairs):
        timep = stracksa[p].frame_id - stracksa[p].start_frame
        timeq = stracksb[q].frame_id - stracksb[q].start_frame
        if timep > timeq:
            dupb.append(q)
        else:
            dupa.append(p)
    return ([t for i, t in enumerate(stracksa) if i not in dupa],
            [t for i, t in enumerate(stracksb) if i not in dupb])
