"""Frames in, tracks out: each frame through a FairMOT network (any engine, or eager) as
FairMOT's ``JDETracker.update`` runs it (the letterbox, the top 500 peaks decoded, boxes
mapped back to the frame's pixels, embeddings read at the peaks) and then through the
tracker; the tracks FairMOT's ``eval_seq`` writes come out frame by frame."""
import time
from dataclasses import dataclass

import numpy as np

from ..tasks.serving import run_dense
from .motchallenge import reported
from .tracker import JDETracker

DEFAULT_FRAME_RATE = 30       # a folder of frames says none: FairMOT's default
DEFAULT_TRACK_BUFFER = 30


@dataclass
class TrackedFrame:
    """One frame's outcome: its number (from 1), the BGR frame, the tracks reported (after
    FairMOT's area and aspect filter), the detections above the threshold, and the seconds
    spent in the network and in all."""

    number: int
    pixels: np.ndarray
    tracks: list
    detections: int
    model_seconds: float
    seconds: float


def frame_detections(spec, run, pixels):
    """A frame (8-bit BGR) -> (detections (K, 5) x1 y1 x2 y2 score in its pixels, best
    first; embeddings (K, D)), the K the model decodes."""
    found = run_dense(spec, run, pixels).detections
    if found.embeddings is None:
        raise ValueError(f'tracking needs identity embeddings (FairMOT\'s \'id\' map); this '
                         f'{spec.task} model has outputs {", ".join(spec.output_names)}')
    return np.concatenate([found.boxes, found.scores[:, None]], axis=1), found.embeddings


def track_frames(spec, run, frames, frame_rate=DEFAULT_FRAME_RATE,
                 track_buffer=DEFAULT_TRACK_BUFFER, conf_thres=None):
    """Yield a :class:`TrackedFrame` for each ``(number, BGR array)`` of ``frames``, in
    order; ``run``: the network (a Predictor or an eager callable) of ``spec``;
    ``conf_thres`` defaults to the model's score threshold (FairMOT's 0.4)."""
    if spec.task != 'tracking':
        raise ValueError(f'tracking runs a FairMOT model, not a {spec.task} one')
    threshold = spec.score_threshold if conf_thres is None else conf_thres
    tracker = JDETracker(frame_rate=frame_rate, conf_thres=threshold, track_buffer=track_buffer)
    in_model = [0.0]

    def timed(batch):
        start = time.perf_counter()
        out = run(batch)
        in_model[0] += time.perf_counter() - start
        return out
    timed.meta = getattr(run, 'meta', None)   # an export fixed to one size stays so
    for number, pixels in frames:
        start, in_model[0] = time.perf_counter(), 0.0
        detections, embeddings = frame_detections(spec, timed, pixels)
        tracks = reported(tracker.update(detections, embeddings))
        yield TrackedFrame(number, pixels, tracks, int((detections[:, 4] > threshold).sum()),
                           in_model[0], time.perf_counter() - start)
