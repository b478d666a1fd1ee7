"""The frames a tracker runs on, as FairMOT's loaders give them: a video read with OpenCV
and stretched to 1920x1080 (``LoadVideo``; or kept at its own size), or a folder of images
(``LoadImages``: .jpg, .jpeg, .png and .tif, sorted by name, at their own size), each an
8-bit BGR array. What can be checked is checked before the first frame is tracked (a
video that opens and declares a sane size, a folder with frames of one size); a frame that
cannot be read later stops the run with its name or number."""
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from ..core.errors import ImageReadError, PaddleDLAError, printable
from ..models.preprocessing import MAX_IMAGE_PIXELS
from ..tasks.inputs import image_size, opencv, read_bgr

FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.tif')
VIDEO_SIZE = (1920, 1080)   # (width, height) FairMOT's demo stretches every video to


class FrameError(PaddleDLAError, ValueError):
    """Frames that cannot be tracked; the message names the file."""


@dataclass
class Frames:
    """A source of frames: iterate for ``(number from 1, BGR array)``. ``frame_rate``: the
    video's own (rounded, as FairMOT reads it), None for a folder; ``count``: frames
    expected; ``size``: (width, height) of every frame delivered."""

    path: str
    count: int
    size: Tuple[int, int]
    frame_rate: Optional[int]
    _frames: Callable

    def __iter__(self):
        return self._frames()

    def __len__(self):
        return self.count


def open_frames(path, keep_aspect=False):
    """The :class:`Frames` of a video file or a folder of images. A video is stretched to
    1920x1080 as FairMOT's demo does (tracks then come in those pixels), unless
    ``keep_aspect``: its frames at their own size. A folder's images are at their own size
    either way, as FairMOT's ``LoadImages`` reads them."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return _folder(path)
    if not os.path.isfile(path):
        what = 'not a regular file' if os.path.exists(path) else 'no such file or folder'
        raise FrameError(f'cannot read {printable(path)}: {what}')
    return _video(path, keep_aspect)


def _folder(path):
    names = sorted(n for n in os.listdir(path)
                   if os.path.splitext(n)[1].lower() in FRAME_EXTENSIONS)
    files = [os.path.join(path, n) for n in names]
    if not files:
        raise FrameError(f'{printable(path)}: no frames in this folder (FairMOT reads '
                         f'{", ".join(FRAME_EXTENSIONS)} files)')
    try:
        size = image_size(files[0])
        for name in files[1:]:
            other = image_size(name)
            if other != size:
                raise FrameError(f'{printable(name)} is {other[0]}x{other[1]} where the first '
                                 f'frame, {printable(files[0])}, is {size[0]}x{size[1]}: the '
                                 f'frames of one sequence share one size')
    except ImageReadError as exc:
        raise FrameError(str(exc)) from None

    def frames():
        for number, name in enumerate(files, 1):
            try:
                pixels = read_bgr(name)
            except ImageReadError as exc:
                raise FrameError(str(exc)) from None
            yield number, pixels
    return Frames(path, len(files), size, None, frames)


@contextlib.contextmanager
def _quiet_decoder():
    """FFmpeg and OpenCV log a bad file's faults to the process's stderr themselves; we
    say what is wrong in one line of our own, so their lines are dropped meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'wb') as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _video(path, keep_aspect):
    cv2 = opencv()
    with _quiet_decoder():   # a file, never a pattern or a URL
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise FrameError(f'cannot read {printable(path)}: not a video OpenCV can open')
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frame_rate = int(round(capture.get(cv2.CAP_PROP_FPS) or 0)) or None
    capture.release()
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS or count < 1:
        raise FrameError(f'cannot read {printable(path)}: it declares {count} frames of '
                         f'{width}x{height} pixels')
    size = (width, height) if keep_aspect else VIDEO_SIZE

    def frames():
        with _quiet_decoder():
            capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        try:
            for number in range(1, count + 1):
                with _quiet_decoder():
                    ok, pixels = capture.read()
                if not ok or pixels is None:
                    raise FrameError(f'cannot read frame {number} of {printable(path)} (it '
                                     f'declares {count} frames)')
                if pixels.shape[:2] != (height, width):
                    raise FrameError(f'frame {number} of {printable(path)} is '
                                     f'{pixels.shape[1]}x{pixels.shape[0]}, not the '
                                     f'{width}x{height} the video declares')
                if not keep_aspect:
                    pixels = cv2.resize(pixels, VIDEO_SIZE)
                yield number, pixels
        finally:
            capture.release()
    return Frames(path, count, size, frame_rate, frames)
