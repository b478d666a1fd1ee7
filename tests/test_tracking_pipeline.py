"""FairMOT from frames to tracks, held to the reference pipeline run in PyTorch
(``fairmot_pipeline``: FairMOT's letterbox, the network, ``mot_decode``, ``post_process``,
the tracker of ``fairmot_tracker``, ``eval_seq``'s filter) on a real photograph filmed by a
panning camera: the same ids frame by frame, boxes within 0.05 px, scores within 5e-5;
through ``paddle-dla track`` on a folder of frames and on a video, and on every engine."""
import os

import cv2
import numpy as np
import pytest
import skimage

torch = pytest.importorskip('torch')  # marked torch: skipped whole without PyTorch

pytestmark = pytest.mark.torch

import paddle_dla  # noqa: E402
import fairmot_pipeline as reference_pipeline  # noqa: E402
import fairmot_tracker as reference_tracker  # noqa: E402
from hostile import run_module  # noqa: E402
from paddle_dla.inference import compile_model, eager_predictor, installed_engines  # noqa: E402
from paddle_dla.tasks import inputs  # noqa: E402
from paddle_dla.tasks.decode import centernet_affine  # noqa: E402
from paddle_dla.tasks.serving import DenseSpec  # noqa: E402
from paddle_dla.tracking.pipeline import track_frames  # noqa: E402

BOX_TOLERANCE = 0.05     # pixels of the frame
SCORE_TOLERANCE = 5e-5
SMALL = (192, 352)       # an input of FairMOT's aspect, a tenth of its pixels: fast tests
SMALL_INPUT = ('--input-size', f'{SMALL[1]}x{SMALL[0]}')   # the same, as the commands take it
OFFSET_SCALE, HEAT_SCALE, HEAT_SHIFT = 0.1, 1.5, 0.9
BOX_SIDES = (3.0, 8.0, 3.0, 8.0)   # left, top, right, bottom in cells: people-shaped boxes


@pytest.fixture(scope='module')
def fairmot(tmp_path_factory):
    """The PyTorch reference (float32) and ours from its checkpoint. As for CenterNet, the
    offsets are scaled to a tenth (float32 then follows float64); the heatmap is widened and
    raised so that tens of detections a frame clear FairMOT's 0.4, and the boxes are made
    taller than wide, as people are."""
    from dense_reference import (FAIRMOT_HEADS, centernet_reference, save_centernet_checkpoint,
                                 scale_offsets)
    reference = scale_offsets(centernet_reference(FAIRMOT_HEADS), OFFSET_SCALE)
    with torch.no_grad():
        reference.hm[2].weight.mul_(HEAT_SCALE)
        reference.hm[2].bias.add_(HEAT_SHIFT)
        reference.wh[2].bias.add_(torch.tensor(BOX_SIDES, dtype=reference.wh[2].bias.dtype))
    path = tmp_path_factory.mktemp('fairmot') / 'fairmot_dla34.pth'
    save_centernet_checkpoint(reference, path, module_prefix=True, epoch=30)
    ours = paddle_dla.create_model('fairmot_dla34', pretrained=str(path))
    ours.eval()
    return reference.float().eval(), ours, str(path)


def panning_frames(count, size=(640, 480), step=(12, 3)):
    """A camera panning across a photograph: ``count`` 8-bit BGR frames of ``size``."""
    scene = cv2.imread(os.path.join(skimage.data_dir, 'astronaut.png'))
    scene = cv2.resize(scene, (1400, 1000), interpolation=cv2.INTER_CUBIC)
    w, h = size
    return [np.ascontiguousarray(scene[60 + step[1] * t:60 + step[1] * t + h,
                                       40 + step[0] * t:40 + step[0] * t + w])
            for t in range(count)]


def reference_tracks(reference, frames, input_hw=None, frame_rate=30):
    """eval_seq's results for BGR frames: [(frame, tlwhs, ids, scores)]."""
    height, width = input_hw or (reference_pipeline.INPUT_H, reference_pipeline.INPUT_W)

    def network_inputs():
        for i, img0 in enumerate(frames):
            img, _, _, _ = reference_pipeline.letterbox(img0, height, width)
            img = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)
            img /= 255.0
            yield i, img, img0
    reference_tracker.reset_ids()
    return reference_pipeline.track(reference, network_inputs(),
                                    reference_tracker.JDETracker(frame_rate))


def our_tracks(ours, frames, input_hw=SMALL, run=None, frame_rate=30):
    spec = DenseSpec.of_model(ours, *input_hw)
    tracked = track_frames(spec, run or eager_predictor(ours), enumerate(frames, 1), frame_rate)
    return [(f.number, [t.tlwh for t in f.tracks], [t.track_id for t in f.tracks],
             [t.score for t in f.tracks]) for f in tracked]


def differences(ours, expected):
    """(frames whose tracks differ, largest box error in px, largest score error). Ids are
    compared through one mapping for the whole stream: detections whose scores tie within
    float32 noise may start their tracks in either order, so the numbers may differ, but
    each reference track must be one of ours from its first frame to its last."""
    assert len(ours) == len(expected)
    mismatched, box, score, mapping, taken = 0, 0.0, 0.0, {}, {}
    for (frame, tlwhs, ids, scores), (e_frame, e_tlwhs, e_ids, e_scores) in zip(ours, expected):
        assert frame == e_frame
        if len(ids) != len(e_ids):
            mismatched += 1
            continue
        tlwhs, e_tlwhs = np.array(tlwhs).reshape(-1, 4), np.array(e_tlwhs).reshape(-1, 4)
        same = True
        for j, e_id in enumerate(e_ids):
            errors = np.abs(tlwhs - e_tlwhs[j]).max(axis=1)
            i = int(np.argmin(errors))
            if mapping.setdefault(e_id, ids[i]) != ids[i] or taken.setdefault(ids[i], e_id) != e_id:
                same = False
                continue
            box = max(box, float(errors[i]))
            score = max(score, abs(float(scores[i]) - float(e_scores[j])))
        mismatched += not same
    return mismatched, box, score


def _assert_same(ours, expected):
    tracked = sum(len(ids) for _, _, ids, _ in expected)
    assert tracked >= 5 * len(expected), 'too few tracks for a comparison'
    assert len({i for _, _, ids, _ in expected for i in ids}) >= 5
    mismatched, box, score = differences(ours, expected)
    assert mismatched == 0 and box <= BOX_TOLERANCE and score <= SCORE_TOLERANCE, \
        (mismatched, box, score)


@pytest.mark.full
def test_tracks_are_the_reference_pipelines_and_a_wrong_geometry_misses(fairmot, monkeypatch):
    """Six frames of a panning camera: the same tracks frame by frame. Boxes mapped back by
    CenterNet's affine (scale max(h, w)) instead of FairMOT's fail by far in the first
    frames already."""
    reference, ours, _ = fairmot
    frames = panning_frames(6)
    expected = reference_tracks(reference, frames, SMALL)
    _assert_same(our_tracks(ours, frames), expected)
    monkeypatch.setattr(inputs, 'fairmot_affine', lambda image_hw, input_hw: centernet_affine(
        image_hw, input_hw))
    mismatched, box, _ = differences(our_tracks(ours, frames[:2]), expected[:2])
    assert mismatched > 0 or box > 100 * BOX_TOLERANCE


@pytest.mark.full
@pytest.mark.parametrize('engine', installed_engines('cpu', 'fp32'))
def test_every_engine_gives_the_reference_pipelines_tracks(fairmot, engine, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv('PADDLE_DLA_HOME', str(tmp_path))
    reference, ours, _ = fairmot
    run = compile_model(ours, input_shape=(None, 3, *SMALL), engine=engine)
    frames = panning_frames(8, size=(500, 700), step=(-4, 10))   # a portrait camera
    _assert_same(our_tracks(ours, frames, run=run), reference_tracks(reference, frames, SMALL))


def _result_rows(path):
    rows = [line.split(',') for line in open(path).read().splitlines()]
    return [(int(r[0]), int(r[1]), [float(v) for v in r[2:6]], float(r[6]), r[7:]) for r in rows]


def assert_results_file(path, expected):
    """A MOTChallenge results file holds the reference's tracks, frame by frame."""
    rows = _result_rows(path)
    assert all(rest == ['-1', '-1', '-1'] for *_, rest in rows)
    as_results = []
    for frame, _, _, _ in expected:
        mine = [r for r in rows if r[0] == frame]
        as_results.append((frame, [r[2] for r in mine], [r[1] for r in mine],
                           [r[3] for r in mine]))
    assert len(rows) == sum(len(ids) for _, _, ids, _ in expected)
    _assert_same(as_results, expected)


def _frame_folder(tmp_path, count=4):
    """A folder of JPEG frames (and a note that is not one) -> (folder, frames read back)."""
    folder = tmp_path / 'img1'
    folder.mkdir()
    for i, frame in enumerate(panning_frames(count, size=(640, 360), step=(16, 2)), 1):
        cv2.imwrite(str(folder / f'{i:06d}.jpg'), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / 'notes.txt').write_text('not a frame')
    return folder, [cv2.imread(str(folder / f'{i:06d}.jpg')) for i in range(1, count + 1)]


@pytest.mark.full
def test_track_command_on_a_folder_of_frames(fairmot, tmp_path):
    """``paddle-dla track FOLDER``: the reference's tracks as MOTChallenge lines, an
    annotated video of every frame, progress and speed reported."""
    reference, _, checkpoint = fairmot
    folder, read_back = _frame_folder(tmp_path)
    out, video = tmp_path / 'tracks.txt', tmp_path / 'tracked.mp4'
    result = run_module('track', str(folder), '--model', 'fairmot_dla34', '--weights', checkpoint,
                     '--engine', 'eager', '--out', str(out), '--out-video', str(video),
                     *SMALL_INPUT)
    assert result.returncode == 0, result.stderr
    assert 'frames: 4 of 640x360' in result.stdout and 'frames/s end to end' in result.stdout
    assert_results_file(out, reference_tracks(reference, read_back, SMALL))
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (640, 360)
    assert sorted(os.listdir(tmp_path)) == ['img1', 'tracked.mp4', 'tracks.txt']


@pytest.mark.full
def test_track_command_runs_an_export(fairmot, tmp_path):
    """``paddle-dla export`` then ``paddle-dla track --exported``: the export's recorded
    recipe (FairMOT's letterbox into 608x1088) gives the reference's tracks on OpenVINO
    (Paddle Inference's tracks are held to the reference in the every-engine test above,
    at a smaller input: its deformable convolution takes seconds a frame here)."""
    reference, _, checkpoint = fairmot
    folder, read_back = _frame_folder(tmp_path)
    exported = tmp_path / 'fairmot'
    result = run_module('export', '--model', 'fairmot_dla34', '--weights', checkpoint,
                        '--out', str(exported), timeout=900)
    assert result.returncode == 0, result.stderr
    out = tmp_path / 'tracks.txt'
    result = run_module('track', str(folder), '--exported', str(exported), '--engine',
                        'openvino', '--out', str(out), '--no-progress')
    assert result.returncode == 0, result.stderr
    assert 'frames: 4 of 640x360' in result.stdout
    assert_results_file(out, reference_tracks(reference, read_back))


@pytest.mark.full
def test_track_command_on_a_video_stretches_it_as_fairmot_does(fairmot, tmp_path):
    """``paddle-dla track VIDEO``: frames decoded by OpenCV, stretched to 1920x1080 as
    FairMOT's LoadVideo does, at the video's own frame rate; --keep-aspect tracks them at
    their own size."""
    reference, _, checkpoint = fairmot
    video = tmp_path / 'street.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 10.0, (640, 480))
    for frame in panning_frames(3):
        writer.write(frame)
    writer.release()
    frame_rate, loaded = reference_pipeline.load_video(str(video))
    assert frame_rate == 10
    stretched = [img0 for _, _, img0 in loaded]
    out = tmp_path / 'tracks.txt'
    result = run_module('track', str(video), '--weights', checkpoint, '--engine', 'eager',
                     '--out', str(out), '--no-progress', *SMALL_INPUT)
    assert result.returncode == 0, result.stderr
    assert 'frames: 3 of 1920x1080' in result.stdout and 'at 10 fps' in result.stdout
    assert_results_file(out, reference_tracks(reference, stretched, SMALL, frame_rate=10))
    kept = tmp_path / 'kept.txt'
    result = run_module('track', str(video), '--weights', checkpoint, '--engine', 'eager',
                     '--out', str(kept), '--keep-aspect', '--no-progress', *SMALL_INPUT)
    assert result.returncode == 0 and 'frames: 3 of 640x480' in result.stdout, result.stderr
    capture = cv2.VideoCapture(str(video))
    own = [capture.read()[1] for _ in range(3)]
    assert_results_file(kept, reference_tracks(reference, own, SMALL, frame_rate=10))


def _write_sequence(root, name, frames, tracks, frame_rate=30):
    """A MOTChallenge sequence whose ground truth is ``tracks`` (eval_seq's results)."""
    folder = root / name
    (folder / 'img1').mkdir(parents=True)
    (folder / 'gt').mkdir()
    for i, frame in enumerate(frames, 1):
        cv2.imwrite(str(folder / 'img1' / f'{i:06d}.png'), frame)
    (folder / 'seqinfo.ini').write_text(
        f'[Sequence]\nname={name}\nimDir=img1\nframeRate={frame_rate}\nseqLength={len(frames)}\n')
    (folder / 'gt' / 'gt.txt').write_text(''.join(
        f'{frame},{tid},{x},{y},{w},{h},1,-1,-1,-1\n'
        for frame, tlwhs, ids, _ in tracks for (x, y, w, h), tid in zip(tlwhs, ids)))


@pytest.mark.full
@pytest.mark.parametrize('nproc', [1, 2])
def test_eval_mot_dir_scores_the_reference_tracks_as_ground_truth_perfectly(
        fairmot, tmp_path, nproc):
    """Two sequences whose ground truth is the reference pipeline's own tracks: motmetrics
    scores ours 100% MOTA and IDF1 with no switch, one sequence a process or not; each
    sequence's results are kept, the reference's tracks line for line."""
    import json
    reference, _, checkpoint = fairmot
    root = tmp_path / 'MOT15'
    sequences = {'TUD-Campus': (panning_frames(3, size=(640, 480)), 25),
                 'KITTI-13': (panning_frames(3, size=(620, 190), step=(-10, 1)), 10)}
    expected = {}
    for name, (frames, rate) in sequences.items():
        expected[name] = reference_tracks(reference, frames, SMALL, frame_rate=rate)
        _write_sequence(root, name, frames, expected[name], rate)
    metrics = tmp_path / 'metrics.json'
    proc = run_module('eval', '--task', 'tracking', '--mot-dir', str(root), '--model',
                      'fairmot_dla34', '--weights', checkpoint, '--engine', 'eager', '--out',
                      str(metrics), '--no-progress', '--nproc', str(nproc), *SMALL_INPUT,
                      timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert 'MOTA 100.0%, IDF1 100.0%, 0 ID switches over 2 sequences' in proc.stdout, proc.stdout
    assert 'no verdict' in proc.stdout and 'frames/s end to end' in proc.stdout
    saved = json.loads(metrics.read_text())
    assert set(saved['sequences']) == {'KITTI-13', 'TUD-Campus', 'OVERALL'}
    assert saved['sequences']['OVERALL']['mota'] == 100.0 and saved['frames'] == 6
    assert saved['input_size'] == '352x192'
    for name in sequences:
        assert_results_file(tmp_path / 'metrics.tracks' / f'{name}.txt', expected[name])
