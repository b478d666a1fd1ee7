"""torch2paddle.py on every checkpoint layout, in one batch run, against the oracle.

The fast tier converts one file of each layout users bring (official with its dead keys,
the official release's legacy pre-1.6 format, timm .pth, Hugging Face .safetensors, a
training checkpoint with ``module.`` keys and another class count); the full tier converts
every variant in the official and timm layouts, and the others on a few variants: a Hugging
Face file is timm's state dict in another container, the legacy format the official one in
another pickle."""

import shutil

import numpy as np
import paddle
import pytest

import paddle_dla
import paddle_dla.models.complexity
import paddle_dla.weights.convert
from helpers import (FLOAT32_LIMIT, inspected_model, relative_error, run_cli, run_paddle,
                     top1_agrees)

ALL = paddle_dla.list_models()
OFFICIAL = [n for n in ALL if 'res2' not in n]  # the ten files of the official release

# file name -> (variant, classes, layout); layouts are the writers of checkpoint_files.py.
FAST_CASES = {
    'dla_46_c_official.pth': ('dla_46_c', 1000, 'save_official'),
    'dla_46_c_timm.pth': ('dla_46_c', 1000, 'save_timm'),
    'dla_46_c_hf.safetensors': ('dla_46_c', 1000, 'save_safetensors'),
    'dla_60x_c_official_legacy.pth': ('dla_60x_c', 1000, 'save_official_legacy'),
    'dla_60x_c_finetuned10.pth': ('dla_60x_c', 10, 'save_training_checkpoint'),
}
CASES = {}
for _name in OFFICIAL:
    CASES[f'{_name}_official.pth'] = (_name, 1000, 'save_official')
for _name in ALL:
    CASES[f'{_name}_timm.pth'] = (_name, 1000, 'save_timm')
for _name in ('dla_34', 'dla_60', 'dla_102x2', 'dla_60_res2next'):
    CASES[f'{_name}_hf.safetensors'] = (_name, 1000, 'save_safetensors')
CASES['dla_102_official_legacy.pth'] = ('dla_102', 1000, 'save_official_legacy')
CASES['dla_34_finetuned10.pth'] = ('dla_34', 10, 'save_training_checkpoint')
CASES['dla_60x_c_finetuned10.pth'] = ('dla_60x_c', 10, 'save_training_checkpoint')


def _batch_run(tmp_path_factory, cases):
    import checkpoint_files
    src, dst = tmp_path_factory.mktemp('src'), tmp_path_factory.mktemp('dst')
    for filename, (variant, classes, layout) in cases.items():
        save = getattr(checkpoint_files, layout)
        if classes == 1000:
            save(variant, src / filename)
        else:
            save(variant, src / filename, num_classes=classes)
    proc = run_cli('tools/torch2paddle.py', '--src', src, '--dst', dst, timeout=900)
    shutil.rmtree(src)  # gigabytes of sources, no longer needed
    return proc, dst


@pytest.fixture(scope='module')
def fast_batch(tmp_path_factory):
    return _batch_run(tmp_path_factory, FAST_CASES)


def _assert_matches_oracle(dst, cases, filename):
    from oracle import oracle, random_images, reference_logits
    variant, classes, _ = cases[filename]
    path = dst / (filename.rsplit('.', 1)[0] + '.pdparams')
    model = paddle_dla.create_model(variant, num_classes=classes, pretrained=str(path))
    model.eval()
    assert paddle.load(str(path))['fc.weight'].dtype == paddle.float32
    images = random_images((2, 3, 64, 64))
    reference = reference_logits(oracle(variant, num_classes=classes), images)
    ours = run_paddle(model, images)
    assert ours.shape == (2, classes), filename
    assert relative_error(ours, reference) <= FLOAT32_LIMIT, filename
    assert top1_agrees(ours, reference), filename


def _assert_same_bytes(dst, variant):
    digests = {open(dst / f'{variant}{s}.pdparams', 'rb').read() for s in
               ('_official', '_timm', '_hf')}
    assert len(digests) == 1, variant


def _assert_reported(proc, cases):
    assert proc.returncode == 0, proc.stderr
    assert f'converted {len(cases)} of {len(cases)} checkpoints' in proc.stdout
    for filename, (variant, classes, _) in cases.items():
        line = next(l for l in proc.stdout.splitlines() if l.split(': ')[0].endswith(filename))
        assert f'-> {variant}, ' in line and f'{classes} classes' in line
        dead = sum(1 for k in paddle_dla.weights.convert.dead_key_shapes(variant)
                   if not k.endswith('num_batches_tracked'))
        expected_dropped = dead if '_official' in filename else 0
        assert f'{expected_dropped} dead keys dropped' in line, line
        assert 'sha256 ' in line


@pytest.mark.torch
def test_batch_converts_every_layout_without_model(fast_batch):
    _assert_reported(fast_batch[0], FAST_CASES)


@pytest.mark.torch
@pytest.mark.parametrize('filename', FAST_CASES)
def test_converted_file_matches_oracle(filename, fast_batch):
    _assert_matches_oracle(fast_batch[1], FAST_CASES, filename)


@pytest.mark.torch
def test_same_weights_give_the_same_bytes_whatever_the_layout(fast_batch):
    _assert_same_bytes(fast_batch[1], 'dla_46_c')


@pytest.mark.full
@pytest.mark.torch
def test_batch_converts_every_variant_in_every_layout(tmp_path_factory):
    """The full tier's batch, checked in one test (its conversions take a minute: split over
    tests, each process running one would make them again): every file reported, equal to
    the oracle, and one variant's layouts giving the same bytes."""
    proc, dst = _batch_run(tmp_path_factory, CASES)
    _assert_reported(proc, CASES)
    for filename in CASES:
        _assert_matches_oracle(dst, CASES, filename)
    _assert_same_bytes(dst, 'dla_60')


def test_dead_keys_are_what_the_official_files_carry():
    """The official code's unused ``project`` layers, per variant: it builds a ``project``
    in every Tree whose input and output widths differ, also where the Tree has sub-Trees
    and forward never uses it, so the official files carry these entries."""
    expected = {
        'dla_34': ['level3', 'level4'],
        'dla_46_c': ['level4'], 'dla_46x_c': ['level4'],
        'dla_60x_c': ['level4', 'level4.tree1'],
        'dla_60': ['level3', 'level4', 'level4.tree1'],
        'dla_60x': ['level3', 'level4', 'level4.tree1'],
    }
    deep = ['level3', 'level3.tree1', 'level4', 'level4.tree1', 'level4.tree1.tree1']
    for name in ('dla_102', 'dla_102x', 'dla_102x2'):
        expected[name] = deep
    expected['dla_169'] = ['level2'] + deep + ['level4.tree1.tree1.tree1']
    expected['dla_60_res2net'] = expected['dla_60_res2next'] = expected['dla_60']
    for name in ALL:
        got = [p for p, _, _ in paddle_dla.weights.convert.dead_projects(name)]
        assert sorted(got) == sorted(expected[name]), name


@pytest.mark.parametrize('name,millions', [
    ('dla_34', 15.784), ('dla_46_c', 1.310), ('dla_46x_c', 1.077), ('dla_60x_c', 1.337),
    ('dla_60', 22.334), ('dla_60x', 17.650), ('dla_102', 33.732), ('dla_102x', 26.772),
    ('dla_102x2', 41.745), ('dla_169', 53.989)])
def test_official_file_parameter_counts(name, millions):
    """Trainable parameters plus the dead projections equal what the official release's
    files hold (counted in those files, in millions)."""
    dead = sum(int(np.prod(s)) for k, s in paddle_dla.weights.convert.dead_key_shapes(name).items()
               if k.endswith(('0.weight', '1.weight', '1.bias')))
    total = paddle_dla.models.complexity.count_params(inspected_model(name)) + dead
    assert round(total / 1e6, 3) == millions
