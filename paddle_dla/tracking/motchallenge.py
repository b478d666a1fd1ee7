"""The MOTChallenge text formats as FairMOT writes and reads them: results lines
``frame,id,x,y,w,h,score,-1,-1,-1`` (frames from 1) with ``eval_seq``'s filter (more
than 100 square pixels, no wider than 1.6 times the height), ground truth ``gt/gt.txt``
read as ``read_mot_results`` reads it (on MOT16 and MOT17 only people marked to count;
people on vehicles, static people, distractors and reflections are 'ignore' boxes), and a
sequence's ``seqinfo.ini``. A malformed file is refused with its name and line."""
import configparser
import os
from dataclasses import dataclass

import numpy as np

from ..core.errors import PaddleDLAError, printable
from ..core.textfiles import read_text_file

MIN_BOX_AREA = 100.0
MAX_ASPECT = 1.6              # width / height: wider boxes are not pedestrians
VALID_LABELS = {1}            # MOT16/17 classes: pedestrian
IGNORE_LABELS = {2, 7, 8, 12}  # person on vehicle, static person, distractor, reflection
_LABELLED = ('MOT16-', 'MOT17-')   # sequences whose gt carries marks and classes
MAX_MOT_FILE_BYTES = 256 << 20   # MOT17's largest gt.txt is under 3 MiB
MAX_SEQINFO_BYTES = 1 << 20


class MOTFormatError(PaddleDLAError, ValueError):
    """A MOTChallenge file that cannot be read; the message names the file and line."""


def reported(tracks):
    """The tracks FairMOT's ``eval_seq`` writes: area over 100 px², not wider than 1.6 x
    their height."""
    return [t for t in tracks if t.tlwh[2] * t.tlwh[3] > MIN_BOX_AREA
            and not t.tlwh[2] / t.tlwh[3] > MAX_ASPECT]


def result_lines(frame, tracks):
    """One frame's tracks as MOTChallenge lines (with newlines)."""
    return ''.join(f'{frame},{t.track_id},{float(t.tlwh[0])},{float(t.tlwh[1])},'
                   f'{float(t.tlwh[2])},{float(t.tlwh[3])},{float(t.score)},-1,-1,-1\n'
                   for t in tracks)


@dataclass(frozen=True)
class Boxes:
    """One frame's boxes: tlwh (N, 4) float64, ids (N,), scores (N,)."""

    tlwh: np.ndarray
    ids: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))


def read_mot_file(path, kind='results'):
    """``{frame: Boxes}`` of a MOTChallenge file, as FairMOT's ``read_mot_results`` reads
    it; ``kind``: 'results', 'gt' (the boxes that count) or 'ignore' (the boxes that neither
    count nor are counted against). Every frame named keeps an entry, even with no box
    left. Lines of fewer than 7 fields are refused (FairMOT would skip them silently)."""
    labelled = any(tag in path for tag in _LABELLED)
    rows = {}
    text = read_text_file(path, MAX_MOT_FILE_BYTES, MOTFormatError, 'MOTChallenge file',
                          'a sequence\'s boxes are a few MiB')
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(',')
        try:
            if len(fields) < 7:
                raise ValueError(f'{len(fields)} fields, at least 7 expected '
                                 f'(frame,id,x,y,w,h,score|mark,...)')
            frame, track_id = int(fields[0]), int(fields[1])
            tlwh = tuple(float(v) for v in fields[2:6])
            if not all(np.isfinite(tlwh)):
                raise ValueError('a box that is not a finite number')
            if frame < 1:
                continue
            frames = rows.setdefault(frame, [])
            if kind == 'results':
                score = float(fields[6])
            elif not labelled:
                if kind == 'ignore':
                    continue
                score = 1.0
            else:
                if len(fields) < 9:
                    raise ValueError(f'{len(fields)} fields; MOT16/17 ground truth has 9 '
                                     f'(frame,id,x,y,w,h,mark,class,visibility)')
                mark, label, visibility = int(float(fields[6])), int(float(fields[7])), \
                    float(fields[8])
                if kind == 'gt' and (mark == 0 or label not in VALID_LABELS):
                    continue
                if kind == 'ignore' and label not in IGNORE_LABELS and visibility >= 0:
                    continue
                score = 1.0
        except ValueError as exc:
            raise MOTFormatError(f'{printable(path)}, line {number}: {exc}') from None
        frames.append((tlwh, track_id, score))
    return {frame: _boxes(items) for frame, items in rows.items()}


def _boxes(items):
    if not items:
        return Boxes.empty()
    tlwh, ids, scores = zip(*items)
    return Boxes(np.asarray(tlwh, np.float64).reshape(-1, 4), np.asarray(ids, np.int64),
                 np.asarray(scores, np.float64))


@dataclass(frozen=True)
class SequenceInfo:
    """What ``seqinfo.ini`` says of a sequence."""

    name: str
    frame_rate: int
    length: int
    image_dir: str


def read_seqinfo(path):
    """A sequence's ``seqinfo.ini`` ([Sequence] name, frameRate, seqLength, imDir)."""
    text = read_text_file(path, MAX_SEQINFO_BYTES, MOTFormatError, 'seqinfo.ini',
                          'a seqinfo.ini is a few lines')
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path)
        section = parser['Sequence']
        info = SequenceInfo(section.get('name', os.path.basename(os.path.dirname(path))),
                            int(section['frameRate']), int(section.get('seqLength', 0)),
                            section.get('imDir', 'img1'))
    except (configparser.Error, KeyError, ValueError) as exc:
        reason = f'no {exc}' if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise MOTFormatError(f'{printable(path)}: not a seqinfo.ini with a [Sequence] '
                             f'frameRate ({printable(reason)})') from None
    if info.frame_rate < 1:
        raise MOTFormatError(f'{printable(path)}: frameRate {info.frame_rate} is not positive')
    if os.path.isabs(info.image_dir) or '..' in info.image_dir.replace('\\', '/').split('/'):
        raise MOTFormatError(f'{printable(path)}: imDir {printable(info.image_dir)} leaves the '
                             f'sequence folder')
    return info
