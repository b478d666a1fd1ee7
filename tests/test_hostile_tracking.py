"""``paddle-dla track`` and ``eval --mot-dir`` given what they cannot use: an unreadable
video or frame, an empty folder, frames of mixed sizes, a malformed ``gt.txt`` or
``seqinfo.ini``. Each is one line on stderr naming the file, a non-zero exit, and nothing
written: no results, no video, no metrics, no temporary file."""
import os

import cv2
import numpy as np
import pytest

from hostile import assert_refused, leftovers, run_module


def _frames(folder, sizes, start=1):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes, start):
        cv2.imwrite(str(folder / f'{i:06d}.jpg'), rng.integers(0, 255, (h, w, 3), np.uint8))
    return folder


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """A FairMOT's weights as paddle-dla convert writes them (random; only the refusals
    are tested here)."""
    import paddle

    import paddle_dla
    path = tmp_path_factory.mktemp('weights') / 'fairmot.pdparams'
    paddle.save(paddle_dla.create_model('fairmot_dla34').state_dict(), str(path))
    return str(path)


def _track(tmp_path, source, *extra):
    out = tmp_path / 'out'
    out.mkdir(exist_ok=True)
    before = leftovers(tmp_path)
    proc = run_module('track', str(source), '--out', str(out / 'tracks.txt'), '--out-video',
                      str(out / 'tracks.mp4'), '--no-progress', *extra)
    return proc, out, before


@pytest.mark.parametrize('case', [  # one video and one folder case fast, the rest full
    'truncated video', 'mixed sizes', *(pytest.param(c, marks=pytest.mark.full) for c in (
        'empty folder', 'no such path', 'not a video', 'unreadable header'))])
def test_track_refuses_before_any_work(tmp_path, case):
    if case == 'empty folder':
        source = tmp_path / 'frames'
        source.mkdir()
        (source / 'readme.txt').write_text('frames go here')
        phrase = 'no frames in this folder'
    elif case == 'no such path':
        source, phrase = tmp_path / 'missing.mp4', 'no such file or folder'
    elif case == 'not a video':
        source = tmp_path / 'clip.mp4'
        source.write_bytes(b'\x00\x00\x00\x18ftypmp42' + os.urandom(4000))
        phrase = 'clip.mp4'
    elif case == 'truncated video':
        source = tmp_path / 'clip.mp4'
        writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*'mp4v'), 10.0, (64, 48))
        for _ in range(5):
            writer.write(np.full((48, 64, 3), 128, np.uint8))
        writer.release()
        data = source.read_bytes()
        source.write_bytes(data[:len(data) // 3])
        phrase = 'clip.mp4'
    elif case == 'mixed sizes':
        source = _frames(tmp_path / 'frames', [(64, 48), (64, 48), (48, 64)])
        phrase = "000003.jpg is 48x64 where the first frame"
    else:
        source = _frames(tmp_path / 'frames', [(64, 48)] * 2)
        (source / '000003.jpg').write_bytes(b'not a jpeg at all')
        phrase = '000003.jpg'
    proc, out, before = _track(tmp_path, source, '--weights', 'never-read.pdparams')
    assert_refused(proc, phrase)
    assert leftovers(tmp_path, before) == [] and os.listdir(out) == []


@pytest.mark.full  # builds and runs a FairMOT (at a tenth of its input's pixels)
def test_a_frame_that_fails_midway_leaves_nothing(tmp_path, weights):
    """A frame whose header reads but whose pixels do not: the run stops at it, naming it,
    and neither the results nor the video of the frames before it are left."""
    source = _frames(tmp_path / 'frames', [(96, 64)] * 2)
    whole = cv2.imencode('.png', np.zeros((64, 96, 3), np.uint8))[1].tobytes()
    (source / '000003.png').write_bytes(whole[:60])
    proc, out, before = _track(tmp_path, source, '--model', 'fairmot_dla34', '--weights',
                               weights, '--engine', 'eager', '--input-size', '352x192')
    assert_refused(proc, '000003.png')
    assert leftovers(tmp_path, before) == [] and os.listdir(out) == []


def _sequence(root, seqinfo='[Sequence]\nname=S\nimDir=img1\nframeRate=30\nseqLength=2\n',
              gt='1,1,10,10,40,100,1,1,1\n2,1,12,10,40,100,1,1,1\n', sizes=((64, 48),) * 2):
    folder = root / 'mot' / 'MOT16-99'
    _frames(folder / 'img1', sizes)
    (folder / 'seqinfo.ini').write_text(seqinfo)
    (folder / 'gt').mkdir()
    (folder / 'gt' / 'gt.txt').write_text(gt)
    return root / 'mot'


@pytest.mark.parametrize('case,phrase', [  # the files' own checks: tests/test_mot_eval.py
    ('gt', 'gt.txt, line 2'), *(pytest.param(*c, marks=pytest.mark.full) for c in (
        ('seqinfo', 'seqinfo.ini'), ('sizes', '000002.jpg is 48x64'),
        ('no sequences', 'no sequence')))])
def test_eval_mot_dir_refuses_bad_data_before_the_model(tmp_path, case, phrase):
    if case == 'gt':
        mot = _sequence(tmp_path, gt='1,1,10,10,40,100,1,1,1\n2,1,12,10\n')
    elif case == 'seqinfo':
        mot = _sequence(tmp_path, seqinfo='[Sequence]\nname=S\nframeRate=thirty\n')
    elif case == 'sizes':
        mot = _sequence(tmp_path, sizes=((64, 48), (48, 64)))
    else:
        mot = tmp_path / 'mot'
        mot.mkdir()
    metrics = tmp_path / 'metrics.json'
    before = leftovers(tmp_path)
    proc = run_module('eval', '--task', 'tracking', '--mot-dir', str(mot), '--model',
                      'fairmot_dla34', '--weights', 'never-read.pdparams', '--out',
                      str(metrics), '--no-progress')
    assert_refused(proc, phrase)
    assert leftovers(tmp_path, before) == []
    assert not os.path.exists(tmp_path / 'metrics.tracks')


def test_eval_task_must_fit_the_model(tmp_path):
    proc = run_module('eval', '--task', 'tracking', '--model', 'centernet_dla34',
                      '--mot-dir', str(tmp_path))
    assert_refused(proc, '--task tracking: centernet_dla34 is a detection network')


@pytest.mark.parametrize('extra,phrase', [  # one fast, the rest full
    (('--input-size', '350x192'), '--input-size 350x192: fairmot_dla34 needs multiples of 32'),
    *(pytest.param(*c, marks=pytest.mark.full) for c in (
        (('--input-size', '352'), "'352' is not WIDTHxHEIGHT"),
        (('--exported', 'fairmot_export', '--input-size', '352x192'),
         '--input-size is for a --model; fairmot_export runs at the size it was exported at'))),
])
def test_track_input_size_is_refused_before_any_work(tmp_path, extra, phrase):
    source = _frames(tmp_path / 'frames', [(64, 48)] * 2)
    weights = () if '--exported' in extra else ('--weights', 'never-read.pdparams')
    proc, out, before = _track(tmp_path, source, *weights, *extra)
    assert_refused(proc, phrase)
    assert leftovers(tmp_path, before) == [] and os.listdir(out) == []


@pytest.mark.full
def test_eval_input_size_is_centernets_and_fairmots(tmp_path):
    proc = run_module('eval', '--model', 'dla_34', '--data-dir', str(tmp_path),
                      '--input-size', '352x192')
    assert_refused(proc, '--input-size is for the dense networks')
    proc = run_module('eval', '--model', 'dla34up', '--cityscapes', str(tmp_path),
                      '--input-size', '352x192')
    assert_refused(proc, 'dla34up runs each image at its own resolution')
    proc = run_module('eval', '--model', 'centernet_dla34', '--coco-annotations',
                      str(tmp_path / 'a.json'), '--images', str(tmp_path),
                      '--input-size', '352x192', '--keep-res')
    assert_refused(proc, '--keep-res runs each image at its own size; --input-size fixes one')
