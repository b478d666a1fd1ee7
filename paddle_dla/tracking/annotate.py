"""Tracks drawn on their frames and written as a video with OpenCV, as FairMOT's
``plot_tracking`` draws them: a box and the id in a colour of the id's own, and the frame
number, frame rate and track count in the corner."""
import contextlib

from ..core.atomic import atomic_output
from ..core.errors import PaddleDLAError, printable
from ..tasks.inputs import opencv


class VideoWriteError(PaddleDLAError, OSError):
    """OpenCV could not write the video asked for."""


def id_colour(track_id):
    """FairMOT's colour of an id (BGR)."""
    idx = track_id * 3
    return (37 * idx) % 255, (17 * idx) % 255, (29 * idx) % 255


def draw_tracks(pixels, tracks, frame, fps=None):
    """A copy of the BGR frame with ``tracks`` drawn on it."""
    cv2 = opencv()
    image = pixels.copy()
    height, width = image.shape[:2]
    scale = max(1.0, width / 500.0)
    thickness = max(1, int(width / 500.0))
    header = f'frame: {frame}  tracks: {len(tracks)}' + (f'  fps: {fps:.2f}' if fps else '')
    cv2.putText(image, header, (0, int(15 * scale)), cv2.FONT_HERSHEY_PLAIN, scale,
                (0, 0, 255), thickness=2)
    for track in tracks:
        x, y, w, h = (float(v) for v in track.tlwh)
        top_left, bottom_right = (int(x), int(y)), (int(x + w), int(y + h))
        colour = id_colour(track.track_id)
        cv2.rectangle(image, top_left, bottom_right, colour, thickness)
        cv2.putText(image, str(track.track_id), (top_left[0], top_left[1] + 30),
                    cv2.FONT_HERSHEY_PLAIN, scale, (0, 0, 255), thickness=thickness)
    return image


@contextlib.contextmanager
def video_writer(path, frame_rate, size):
    """A function that appends BGR frames of ``size`` (width, height) to an MPEG-4 video at
    ``path``, written whole or not at all."""
    cv2 = opencv()
    with atomic_output(path, suffix='.mp4') as tmp:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*'mp4v'), float(frame_rate),
                                 tuple(int(v) for v in size))
        if not writer.isOpened():
            raise VideoWriteError(f'cannot write the video {printable(path)}: OpenCV could not '
                                  f'open an MPEG-4 writer')
        try:
            yield writer.write
        finally:
            writer.release()
