"""Detection streams for testing a tracker: pedestrians walking across a 1920x1080 frame,
as a detector reports them (boxes jittered by a pixel or two, scores, 128-number identity
embeddings near each person's own, float32, best score first), with what makes tracking
hard: look-alikes crossing, occlusions shorter and longer than the tracker's buffer, one
that ends a frame after the buffer, people arriving late, people whose appearance changes
while hidden or drifts, a person too small for an embedding, and clutter scoring under and
over the threshold."""
from dataclasses import dataclass, field

import numpy as np

FRAME_W, FRAME_H = 1920, 1080
EMBEDDING_SIZE = 128
# A frame's embedding scatters this far round its person's (per number; the persons' own
# are 1 apart): enough that a stricter appearance limit loses people the reference keeps.
NOISE = 0.8


@dataclass
class Walker:
    start: int                 # first frame (from 1) and last frame in view
    end: int
    x: float                   # top-left corner at ``start``, pixels
    y: float
    vx: float                  # pixels a frame
    vy: float
    w: float = 60.0
    h: float = 160.0
    feature: np.ndarray = None
    hidden: frozenset = frozenset()
    changed_after: int = 0     # from this frame on, another appearance (0: never)
    other_feature: np.ndarray = None
    drift: np.ndarray = None   # appearance change a frame (turning round, into shade)
    unreliable: bool = False   # too small for its embedding to mean anything
    score: float = 0.8

    def box(self, frame):
        t = frame - self.start
        return np.array([self.x + self.vx * t, self.y + self.vy * t, self.w, self.h])

    def visible(self, frame):
        return self.start <= frame <= self.end and frame not in self.hidden


@dataclass
class Stream:
    frames: list = field(default_factory=list)   # [(detections (N, 5), embeddings (N, D))]
    walkers: list = field(default_factory=list)


def _feature(rng, near=None, spread=1.0):
    base = rng.normal(size=EMBEDDING_SIZE) if near is None else near
    return base + spread * rng.normal(size=EMBEDDING_SIZE) if near is not None else base


def _hidden(first, length):
    return frozenset(range(first, first + length))


def walkers_for(rng, max_time_lost, frames):
    """The cast of a stream, with occlusions sized to the tracker's buffer."""
    short, linger, long_ = max(2, max_time_lost // 3), max_time_lost + 1, max_time_lost + 15
    twin = _feature(rng)
    cast = [
        # Look-alikes crossing in the middle of the frame.
        Walker(1, frames, 200, 450, 9.0, 0.3, feature=twin),
        Walker(1, frames, 1500, 470, -9.0, 0.0, feature=_feature(rng, twin, 0.15)),
        # Hidden for less than the buffer, for exactly one frame more than it, for longer.
        Walker(1, frames, 100, 100, 4.0, 1.0, feature=_feature(rng), hidden=_hidden(12, short)),
        Walker(1, frames, 1700, 120, -4.0, 1.5, feature=_feature(rng),
               hidden=_hidden(10, linger)),
        Walker(1, frames, 600, 800, 3.0, -1.0, feature=_feature(rng), hidden=_hidden(8, long_)),
        # Late arrivals, one of them shy.
        Walker(5, frames, 900, 150, 0.0, 3.0, w=50, h=130, feature=_feature(rng), score=0.6),
        Walker(min(20, frames // 3), frames, 1200, 700, -2.0, 0.0, feature=_feature(rng),
               score=0.45),
        # Appearance changes while hidden (a coat taken off): found again by overlap or anew.
        Walker(1, frames, 300, 750, 2.0, 0.0, w=70, h=180, feature=_feature(rng),
               hidden=_hidden(15, 3), changed_after=15, other_feature=_feature(rng)),
        # A late arrival that walks behind someone standing still and is not seen again:
        # its lost track runs into the older one's place.
        Walker(1, frames, 800, 300, 0.0, 0.0, feature=_feature(rng)),
        Walker(min(10, frames // 4), min(34, frames // 2), 860, 300, -2.0, 0.0,
               feature=_feature(rng)),
        # Turning round while walking behind a pillar: the look drifts, so whether the track
        # is found again depends on how its embedding was smoothed.
        Walker(1, frames, 1400, 800, -5.0, -1.0, feature=_feature(rng), hidden=_hidden(24, 4),
               drift=0.09 * rng.normal(size=EMBEDDING_SIZE)),
        # Far away and small: followed by overlap alone, where the pixel convention counts.
        Walker(1, frames, 50, 950, 4.0, -0.5, w=12, h=30, feature=_feature(rng),
               unreliable=True, score=0.7),
    ]
    return cast


def make_stream(seed, max_time_lost=30, frames=90, clutter=(3, 2)):
    """A stream of ``frames`` frames; ``clutter``: (false detections a frame scoring under
    0.4, scoring over it), each with a random box and embedding."""
    rng = np.random.default_rng(seed)
    cast = walkers_for(rng, max_time_lost, frames)
    stream = Stream(walkers=cast)
    under, over = clutter
    for frame in range(1, frames + 1):
        rows, features = [], []
        for walker in cast:
            if not walker.visible(frame):
                continue
            x, y, w, h = walker.box(frame) + rng.normal(0, 1.5, 4)
            rows.append([x, y, x + w, y + h, walker.score + rng.uniform(-0.05, 0.05)])
            base = (walker.other_feature if walker.changed_after
                    and frame >= walker.changed_after else walker.feature)
            if walker.drift is not None:
                base = base + (frame - walker.start) * walker.drift
            if walker.unreliable:
                base = rng.normal(size=EMBEDDING_SIZE)
            features.append(base + NOISE * rng.normal(size=EMBEDDING_SIZE))
        n_under, n_over = rng.poisson(under), rng.poisson(over)
        for i in range(n_under + n_over):
            x, y = rng.uniform(0, FRAME_W - 100), rng.uniform(0, FRAME_H - 200)
            w, h = rng.uniform(30, 90), rng.uniform(80, 200)
            score = rng.uniform(0.05, 0.39) if i < n_under else rng.uniform(0.41, 0.55)
            rows.append([x, y, x + w, y + h, score])
            features.append(rng.normal(size=EMBEDDING_SIZE))
        detections = np.array(rows, np.float32).reshape(-1, 5)
        embeddings = np.array(features, np.float32).reshape(-1, EMBEDDING_SIZE)
        order = np.argsort(-detections[:, 4], kind='stable')
        stream.frames.append((detections[order], embeddings[order]))
    return stream
