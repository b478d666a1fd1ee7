"""MOTChallenge scoring (``paddle_dla.evaluation.mot``) held to FairMOT's ``Evaluator``
written here from its public code (``tracking_utils/evaluation.py`` and ``io.py``): on
MOT16-style ground truth with marks, classes and ignore boxes, and on 2DMOT15-style; then
known answers, and the files a user can get wrong, each refused in one line."""
import numpy as np
import pytest

from paddle_dla.evaluation.mot import accumulate, as_metrics, iou_distances, summarise
from paddle_dla.evaluation.mot import Sequence, SequenceError, find_sequences
from paddle_dla.tracking.motchallenge import MOTFormatError, read_mot_file, read_seqinfo

mm = pytest.importorskip('motmetrics')


# --- FairMOT's io.read_mot_results and Evaluator, from their structure ----------------------

def reference_read(filename, is_gt=False, is_ignore=False):
    results = {}
    for line in open(filename).readlines():
        f = line.split(',')
        if len(f) < 7:
            continue
        fid = int(f[0])
        if fid < 1:
            continue
        results.setdefault(fid, [])
        if is_gt:
            if 'MOT16-' in filename or 'MOT17-' in filename:
                if int(float(f[6])) == 0 or int(float(f[7])) not in {1}:
                    continue
            score = 1
        elif is_ignore:
            if 'MOT16-' in filename or 'MOT17-' in filename:
                if int(float(f[7])) not in {2, 7, 8, 12} and float(f[8]) >= 0:
                    continue
            else:
                continue
            score = 1
        else:
            score = float(f[6])
        results[fid].append((tuple(map(float, f[2:6])), int(f[1]), score))
    return results


def _unzip(objs):
    tlwhs, ids = ([o[0] for o in objs], [o[1] for o in objs]) if objs else ([], [])
    return np.asarray(tlwhs, dtype=float).reshape(-1, 4), ids


def reference_accumulator(gt_file, result_file):
    gt, ignore = reference_read(gt_file, is_gt=True), reference_read(gt_file, is_ignore=True)
    results = reference_read(result_file)
    acc = mm.MOTAccumulator(auto_id=True)
    with mm.lap.set_default_solver('lap'):
        for frame in sorted(results):
            trk_tlwhs, trk_ids = _unzip(results[frame])
            trk_ids = np.copy(trk_ids)
            ignore_tlwhs, _ = _unzip(ignore.get(frame, []))
            distance = iou_distances(ignore_tlwhs, trk_tlwhs)
            if len(distance) > 0:
                match_is, match_js = mm.lap.linear_sum_assignment(distance)
                match_is, match_js = (np.asarray(a, dtype=int) for a in (match_is, match_js))
                match_ious = distance[match_is, match_js]
                match_js = match_js[np.logical_not(np.isnan(match_ious))]
                keep = np.ones(len(trk_tlwhs), dtype=bool)
                keep[match_js] = False
                trk_tlwhs, trk_ids = trk_tlwhs[keep], trk_ids[keep]
            gt_tlwhs, gt_ids = _unzip(gt.get(frame, []))
            acc.update(gt_ids, trk_ids, iou_distances(gt_tlwhs, trk_tlwhs))
    return acc


def test_iou_distances_are_motmetrics_own_where_it_still_runs():
    a = np.array([[0, 0, 10, 20], [5, 5, 10, 10], [100, 100, 4, 4]], float)
    b = np.array([[1, 1, 10, 20], [6, 4, 9, 12]], float)
    d = iou_distances(a, b)
    inter = 9 * 19
    assert d[0, 0] == pytest.approx(1 - inter / (200 + 200 - inter))
    assert np.isnan(d[2]).all() and d.shape == (3, 2)
    assert iou_distances(np.zeros((0, 4)), b).shape == (0, 0)


# --- sequences on disk ---------------------------------------------------------------------

def _walk(rng, frames, people=6):
    """Ground truth rows of people walking, with ids, marks, classes and visibility."""
    rows = []
    for pid in range(1, people + 1):
        x, y, vx = rng.uniform(50, 900), rng.uniform(50, 400), rng.uniform(-6, 6)
        label = 1 if pid <= 4 else (7 if pid == 5 else 2)   # a static person, one on a bike
        mark = 0 if pid == 4 else 1
        for frame in range(1, frames + 1):
            rows.append((frame, pid, x + vx * frame, y, 40.0, 100.0, mark, label, 0.8))
    return rows


def _tracker_output(gt_rows, rng, switch_at=None):
    """A tracker's results: every gt box jittered, one missed, one false positive a frame,
    and optionally ids 1 and 2 swapped from a frame on."""
    rows = []
    for frame, pid, x, y, w, h, *_ in gt_rows:
        if (frame, pid) == (3, 2):
            continue
        tid = pid
        if switch_at and frame >= switch_at and pid in (1, 2):
            tid = 3 - pid
        rows.append((frame, tid + 10, x + rng.normal(0, 2), y + rng.normal(0, 2), w, h, 0.9))
    for frame in sorted({r[0] for r in gt_rows}):
        rows.append((frame, 99, 1500.0, 700.0, 30.0, 80.0, 0.5))
    return rows


def write_sequence(root, name, frames=8, seed=0, switch_at=None, frame_rate=25):
    """A MOTChallenge sequence folder (no images needed to score) and a results file."""
    rng = np.random.default_rng(seed)
    folder = root / name
    (folder / 'gt').mkdir(parents=True)
    (folder / 'img1').mkdir()
    (folder / 'seqinfo.ini').write_text(
        f'[Sequence]\nname={name}\nimDir=img1\nframeRate={frame_rate}\nseqLength={frames}\n'
        'imWidth=1920\nimHeight=1080\nimExt=.jpg\n')
    gt = _walk(rng, frames)
    (folder / 'gt' / 'gt.txt').write_text(''.join(','.join(str(v) for v in r) + '\n'
                                                  for r in gt))
    results = root / f'{name}.txt'
    results.write_text(''.join(f'{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},-1,-1,-1\n'
                               for r in _tracker_output(gt, rng, switch_at)))
    return folder, results


@pytest.mark.parametrize('name', ['MOT16-02', 'MOT17-09-SDP', 'KITTI-13'])
@pytest.mark.parametrize('switch_at', [None, 5])
def test_scores_are_fairmots_evaluators(tmp_path, name, switch_at):
    folder, results = write_sequence(tmp_path, name, switch_at=switch_at)
    [sequence] = find_sequences(str(folder))
    assert sequence.name == name and sequence.frame_rate == 25
    ours = accumulate(sequence, read_mot_file(str(results)))
    theirs = reference_accumulator(str(folder / 'gt' / 'gt.txt'), str(results))
    mine, _ = summarise([ours], [name])
    expected, _ = summarise([theirs], [name])
    assert as_metrics(mine) == as_metrics(expected)
    overall = as_metrics(mine)['OVERALL']
    # On MOT16/17 the unmarked person and the cyclist do not count, and neither does the
    # false positive near none of them; the static person's boxes are ignored, not missed.
    labelled = name.startswith('MOT1')
    assert overall['num_unique_objects'] == (3 if labelled else 6)
    assert overall['num_switches'] == (2 if switch_at else 0)


def test_a_perfect_tracker_scores_100():
    frames = {f: (np.array([[10.0 * f, 5, 40, 100], [300, 200, 30, 90]]), np.array([1, 2]))
              for f in range(1, 6)}
    from paddle_dla.tracking.motchallenge import Boxes
    gt = {f: Boxes(t, i, np.ones(2)) for f, (t, i) in frames.items()}
    sequence = Sequence('KITTI-17', '.', 10, '.', gt, {})
    results = {f: Boxes(t + 0.5, i + 7, np.full(2, 0.8)) for f, (t, i) in frames.items()}
    metrics = as_metrics(summarise([accumulate(sequence, results)], ['KITTI-17'])[0])
    assert metrics['OVERALL']['mota'] == 100.0 and metrics['OVERALL']['idf1'] == 100.0
    assert metrics['OVERALL']['num_switches'] == 0


@pytest.mark.parametrize('content,message', [
    ('1,1,10,20,30\n', 'line 1: 5 fields, at least 7'),
    ('1,1,10,20,30,40,1,1,1\n2,x,1,1,1,1,1,1,1\n', 'line 2: invalid literal'),
    ('1,1,10,nan,30,40,1,1,1\n', 'not a finite number'),
])
def test_a_malformed_gt_is_refused_with_its_line(tmp_path, content, message):
    path = tmp_path / 'gt.txt'
    path.write_text(content)
    with pytest.raises(MOTFormatError, match=message) as caught:
        read_mot_file(str(path), 'gt')
    assert 'gt.txt' in str(caught.value) and '\n' not in str(caught.value)


@pytest.mark.parametrize('content,message', [
    ('[Sequence]\nname=a\n', 'frameRate'),
    ('[Sequence]\nframeRate=fast\n', 'invalid literal'),
    ('frameRate=30\n', 'no section|Sequence'),
    ('[Sequence]\nframeRate=0\n', 'not positive'),
    ('[Sequence]\nframeRate=30\nimDir=../../etc\n', 'leaves the sequence folder'),
])
def test_a_malformed_seqinfo_is_refused(tmp_path, content, message):
    path = tmp_path / 'seqinfo.ini'
    path.write_text(content)
    with pytest.raises(MOTFormatError, match=message) as caught:
        read_seqinfo(str(path))
    assert 'seqinfo.ini' in str(caught.value) and '\n' not in str(caught.value)


def test_folders_without_sequences_are_refused(tmp_path):
    with pytest.raises(SequenceError, match='no sequence'):
        find_sequences(str(tmp_path))
    folder, _ = write_sequence(tmp_path, 'MOT16-04')
    (folder / 'gt' / 'gt.txt').unlink()
    with pytest.raises(SequenceError, match=r'gt\.txt: no such file'):
        find_sequences(str(tmp_path))


def test_the_verdict_holds_only_for_the_published_checkpoint_split_and_input():
    """FairMOT's published MOTA is for its own checkpoint on the 2DMOT15 validation split at
    its 1088x608 input: anything else gets no verdict, and says which of them differs."""
    from paddle_dla.cli.evaluate_dense import _mot_verdict
    from paddle_dla.models.dense_variants import get_dense_config
    config = get_dense_config('fairmot_dla34')
    published, split = config.published, list(config.published.sequences)
    mota = published.mota
    assert _mot_verdict(published, 'fairmot_dla34.pth', split, mota).startswith('PASS')
    assert _mot_verdict(published, 'fairmot_dla34.pth', split, mota - 1).startswith('FAIL')
    assert 'for fairmot_dla34.pth' in _mot_verdict(published, 'mine.pth', split, mota)
    assert 'for the 2DMOT15 validation sequences' in _mot_verdict(
        published, 'fairmot_dla34.pth', split[:3], mota)
    assert _mot_verdict(published, 'fairmot_dla34.pth', split, mota, config.input) == \
        f'no verdict: the published {mota} MOTA is at 1088x608 input'
