"""MOTChallenge sequences scored as FairMOT's ``Evaluator`` scores them, with motmetrics:
per frame of the results file (FairMOT scores only frames that have a result line), the
results over an 'ignore' box (IoU >= 0.5, matched one to one) taken out, the rest matched
to the ground truth by IoU distance (pairs under IoU 0.5 apart), and the MOTChallenge
metrics (MOTA, IDF1, ID switches, ...) per sequence and overall.

motmetrics' ``iou_matrix`` calls a function NumPy 2 removed; its own ``boxiou`` is used
with the same arithmetic."""
import os
from dataclasses import dataclass

import numpy as np

from ..core.errors import PaddleDLAError, printable
from ..tracking.motchallenge import Boxes, read_mot_file, read_seqinfo

MAX_IOU_DISTANCE = 0.5
# The columns FairMOT's table prints (motmetrics' MOTChallenge set), in order.
METRIC_NAMES = ('idf1', 'idp', 'idr', 'recall', 'precision', 'num_unique_objects',
                'mostly_tracked', 'partially_tracked', 'mostly_lost', 'num_false_positives',
                'num_misses', 'num_switches', 'num_fragmentations', 'mota', 'motp',
                'num_transfer', 'num_ascend', 'num_migrate')
PERCENT = {'idf1', 'idp', 'idr', 'recall', 'precision', 'mota'}


class SequenceError(PaddleDLAError, ValueError):
    """A MOTChallenge folder that cannot be evaluated; the message names the file."""


@dataclass(frozen=True)
class Sequence:
    """One sequence of a MOTChallenge folder, its ground truth read and checked."""

    name: str
    path: str
    frame_rate: int
    frames_dir: str
    gt: dict        # {frame: Boxes} that count
    ignore: dict    # {frame: Boxes} that neither count nor are counted against


def find_sequences(mot_dir):
    """The sequences of ``mot_dir`` (itself one, with ``seqinfo.ini``, or a folder of them),
    in name order, each with ``seqinfo.ini``, its image folder and ``gt/gt.txt``."""
    if not os.path.isdir(mot_dir):
        raise SequenceError(f'{printable(mot_dir)} is not a folder of MOTChallenge sequences')
    if os.path.isfile(os.path.join(mot_dir, 'seqinfo.ini')):
        folders = [mot_dir]
    else:
        folders = [os.path.join(mot_dir, n) for n in sorted(os.listdir(mot_dir))
                   if os.path.isfile(os.path.join(mot_dir, n, 'seqinfo.ini'))]
    if not folders:
        raise SequenceError(f'{printable(mot_dir)}: no sequence (a folder with seqinfo.ini, '
                            f'img1/ and gt/gt.txt) in it')
    return [_sequence(folder) for folder in folders]


def _sequence(folder):
    info = read_seqinfo(os.path.join(folder, 'seqinfo.ini'))
    frames_dir = os.path.join(folder, info.image_dir)
    if not os.path.isdir(frames_dir):
        raise SequenceError(f'{printable(frames_dir)}: no such folder (seqinfo.ini\'s imDir)')
    gt_path = os.path.join(folder, 'gt', 'gt.txt')
    if not os.path.isfile(gt_path):
        raise SequenceError(f'{printable(gt_path)}: no such file; every sequence needs its '
                            f'ground truth')
    return Sequence(os.path.basename(os.path.normpath(folder)), folder, info.frame_rate,
                    frames_dir, read_mot_file(gt_path, 'gt'), read_mot_file(gt_path, 'ignore'))


def iou_distances(objects, hypotheses, max_iou=MAX_IOU_DISTANCE):
    """motmetrics' ``iou_matrix``: 1 - IoU of tlwh boxes, NaN (no pair) past ``max_iou``."""
    import motmetrics as mm
    if np.size(objects) == 0 or np.size(hypotheses) == 0:
        return np.empty((0, 0))
    objects = np.asarray(objects, np.float64)
    hypotheses = np.asarray(hypotheses, np.float64)
    distance = 1 - mm.distances.boxiou(objects[:, None], hypotheses[None, :])
    return np.where(distance > max_iou, np.nan, distance)


def accumulate(sequence, results):
    """A motmetrics accumulator of ``results`` ({frame: Boxes}) against the sequence, as
    ``Evaluator.eval_file`` fills it."""
    import motmetrics as mm
    accumulator = mm.MOTAccumulator(auto_id=True)
    with mm.lap.set_default_solver('lap'):
        for frame in sorted(results):
            found = results[frame]
            tlwh, ids = found.tlwh, found.ids
            ignore = sequence.ignore.get(frame, Boxes.empty())
            distance = iou_distances(ignore.tlwh, tlwh)
            if len(distance) > 0:
                rows, cols = (np.asarray(a, dtype=int) for a in
                              mm.lap.linear_sum_assignment(distance))
                cols = cols[~np.isnan(distance[rows, cols])]
                keep = np.ones(len(tlwh), bool)
                keep[cols] = False
                tlwh, ids = tlwh[keep], ids[keep]
            truth = sequence.gt.get(frame, Boxes.empty())
            accumulator.update(list(truth.ids), list(ids), iou_distances(truth.tlwh, tlwh))
    return accumulator


def summarise(accumulators, names):
    """motmetrics' MOTChallenge metrics of each sequence and OVERALL: (a pandas table,
    its rendering as FairMOT prints it)."""
    import motmetrics as mm
    host = mm.metrics.create()
    summary = host.compute_many(accumulators, metrics=list(METRIC_NAMES), names=list(names),
                                generate_overall=True)
    text = mm.io.render_summary(summary, formatters=host.formatters,
                                namemap=mm.io.motchallenge_metric_names)
    return summary, text


def as_metrics(summary):
    """``{sequence or 'OVERALL': {metric: value}}`` (rates in percent, None where undefined:
    no ground truth, no match), for metrics.json."""
    def value(metric, v):
        v = float(v)
        if not np.isfinite(v):
            return None
        if metric in PERCENT:
            return round(100 * v, 3)
        return round(v, 4) if metric == 'motp' else int(v)
    return {str(name): {m: value(m, row[m]) for m in METRIC_NAMES}
            for name, row in summary.iterrows()}
