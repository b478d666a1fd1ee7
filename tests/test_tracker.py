"""``paddle_dla.tracking.JDETracker`` against FairMOT's tracker written from its public code
(``fairmot_tracker.py``), frame by frame on streams that run every branch of it
(``tracking_streams.py``): the same confirmed tracks with the same ids in the same order,
boxes to 1e-6 px, the same scores; and the mistakes a port can make, shown to fail."""
from collections import Counter

import numpy as np
import pytest

import fairmot_tracker as reference
from paddle_dla.tracking import tracker as ours
from paddle_dla.tracking import JDETracker, Track, kalman
from paddle_dla.tracking.matching import iou_cost
from tracking_streams import EMBEDDING_SIZE, make_stream

BOX_TOLERANCE = 1e-6   # pixels

# Every branch of the reference's update, as its tracker counts them.
BRANCHES = {'under threshold', 'gated', 'new', 'embedding match', 'iou match', 'lost',
            'refound', 'refound after removal', 'timed out', 'confirmed',
            'unconfirmed removed', 'duplicate tracked dropped', 'duplicate lost dropped'}

SETTINGS = [  # (frame_rate, conf_thres, track_buffer)
    (30, 0.4, 30), (10, 0.4, 30), pytest.param(60, 0.4, 30, marks=pytest.mark.full),
    pytest.param(25, 0.5, 20, marks=pytest.mark.full),
    pytest.param(14, 0.4, 30, marks=pytest.mark.full)]


def _run_both(stream, frame_rate=30, conf_thres=0.4, track_buffer=30):
    """(per-frame differences, the reference's branch counts)."""
    reference.reset_ids()
    theirs = reference.JDETracker(frame_rate, conf_thres, track_buffer)
    mine = JDETracker(frame_rate=frame_rate, conf_thres=conf_thres, track_buffer=track_buffer)
    id_mismatches, worst_box, worst_score = 0, 0.0, 0.0
    for detections, embeddings in stream.frames:
        expected = theirs.update(detections, embeddings)
        got = mine.update(detections, embeddings)
        if [t.track_id for t in expected] != [t.track_id for t in got]:
            id_mismatches += 1
            continue
        for e, g in zip(expected, got):
            worst_box = max(worst_box, float(np.abs(e.tlwh - g.tlwh).max()))
            worst_score = max(worst_score, abs(float(e.score) - g.score))
    return (id_mismatches, worst_box, worst_score), theirs.events


@pytest.mark.parametrize('frame_rate,conf_thres,track_buffer', SETTINGS)
def test_tracks_are_the_references_frame_by_frame(frame_rate, conf_thres, track_buffer):
    max_lost = int(frame_rate / 30 * track_buffer)
    stream = make_stream(frame_rate, max_lost, frames=90)
    (mismatches, box, score), events = _run_both(stream, frame_rate, conf_thres, track_buffer)
    assert mismatches == 0
    assert box <= BOX_TOLERANCE and score == 0.0
    # The stream is a hard one: people found again, lost for good, confirmed and dropped.
    for branch in ('refound', 'refound after removal', 'timed out', 'confirmed',
                   'unconfirmed removed', 'duplicate tracked dropped', 'duplicate lost dropped'):
        assert events[branch] > 0, branch


def test_the_streams_run_every_branch_of_the_reference():
    seen = Counter()
    for frame_rate in (30, 10, 60):
        _, events = _run_both(make_stream(frame_rate, frame_rate, frames=90), frame_rate)
        seen.update(events)
    assert BRANCHES <= {branch for branch, count in seen.items() if count}


def _no_plus_one_iou(boxes_a, boxes_b):
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    # Boxes shrunk by one pixel: the +1 convention then gives continuous-area IoU.
    return iou_cost(a + [0, 0, -1, -1], b + [0, 0, -1, -1])


def _predict_keeping_velocity(tracks):
    if tracks:
        means, covariances = kalman.predict(np.array([t.mean for t in tracks]),
                                            np.array([t.covariance for t in tracks]))
        for track, mean, covariance in zip(tracks, means, covariances):
            track.mean, track.covariance = mean, covariance


MISTAKES = {
    'IoU by continuous areas': lambda mp: mp.setattr(ours, 'iou_cost', _no_plus_one_iou),
    'embedding cost limit 0.3': lambda mp: mp.setattr(ours, 'EMBEDDING_LIMIT', 0.3),
    'height velocity kept while lost': lambda mp: mp.setattr(ours, '_predict',
                                                             _predict_keeping_velocity),
    'IoU limit 0.7 for tracked ones': lambda mp: mp.setattr(ours, 'IOU_LIMIT', 0.7),
    'old duplicates kept': lambda mp: mp.setattr(ours, 'DUPLICATE_IOU_COST', 0.0),
}


@pytest.mark.parametrize('mistake', sorted(MISTAKES))
def test_a_mistaken_tracker_fails(monkeypatch, mistake):
    MISTAKES[mistake](monkeypatch)
    seen = []
    for seed in (30, 31, 32):   # the first stream that shows the mistake is enough
        mismatches, box, _ = _run_both(make_stream(seed, 30, frames=90))[0]
        seen.append((mismatches, box))
        if mismatches > 0 or box > 1e3 * BOX_TOLERANCE:
            return
    pytest.fail(f'the mistake went unnoticed: (mismatched frames, worst box) {seen}')


def test_ids_count_from_one_in_each_tracker_and_empty_frames_pass():
    stream = make_stream(5, 30, frames=3)
    for _ in range(2):
        tracker = JDETracker()
        tracks = tracker.update(*stream.frames[0])
        assert min(t.track_id for t in tracks) == 1
        assert all(isinstance(t, Track) and t.tlwh.shape == (4,) for t in tracks)
    assert tracker.update(np.zeros((0, 5), np.float32),
                          np.zeros((0, EMBEDDING_SIZE), np.float32)) == []
    assert tracker.update([], []) == []


@pytest.mark.parametrize('detections,embeddings,message', [
    (np.zeros((2, 4)), np.zeros((2, 8)), r'\(N, 5\)'),
    (np.zeros((2, 5)), np.zeros((3, 8)), 'one per detection'),
])
def test_misshapen_input_is_refused(detections, embeddings, message):
    with pytest.raises(ValueError, match=message):
        JDETracker().update(detections, embeddings)
