"""examples/finetune.py on a tiny generated dataset, and paddle.hub on this repository."""
import json

import numpy as np
import paddle
import pytest
from PIL import Image

import paddle_dla
from paddle_dla.weights.checkpoint import save_pdparams
from paddle_dla.weights.convert import convert_state_dict
from helpers import REPO, run_cli


@pytest.fixture(scope='module')
def two_class_folder(tmp_path_factory):
    """Reddish and bluish noise images: an easy two-class problem."""
    root = tmp_path_factory.mktemp('data')
    rng = np.random.default_rng(0)
    for label, channel in (('blue', 2), ('red', 0)):
        (root / label).mkdir()
        for i in range(48):
            pixels = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            pixels[:, :, channel] += 190
            Image.fromarray(pixels).save(root / label / f'{i:02d}.png')
    return root


@pytest.fixture(scope='module')
def start_weights(tmp_path_factory):
    """The oracle's dla_46_c weights: calibrated, as pretrained weights would be."""
    from oracle import oracle_state_dict
    path = tmp_path_factory.mktemp('w') / 'dla_46_c.pdparams'
    save_pdparams(convert_state_dict(oracle_state_dict('dla_46_c'), 'dla_46_c'), path)
    return path


def _finetune(data, out, weights, epochs, *extra):
    return run_cli('examples/finetune.py', '--model', 'dla_46_c', '--data-dir', data,
                   '--weights', weights, '--epochs', epochs, '--img-size', 64, '--batch-size', 8,
                   '--workers', 0, '--lr', 0.05, '--output', out, *extra, timeout=900)


@pytest.mark.full
@pytest.mark.torch
def test_one_epoch_lowers_the_loss_saves_and_resumes(two_class_folder, start_weights, tmp_path):
    out = tmp_path / 'run'
    proc = _finetune(two_class_folder, out, start_weights, 1)
    assert proc.returncode == 0, proc.stderr
    assert 'epoch 1: train loss' in proc.stdout and 'val top-1' in proc.stdout
    state = json.loads((out / 'last.json').read_text())
    assert state['epoch'] == 1 and state['classes'] == ['blue', 'red']
    steps = state['history'][0]['step_losses']
    third = len(steps) // 3
    assert np.mean(steps[-third:]) < np.mean(steps[:third]), steps

    model = paddle_dla.create_model('dla_46_c', num_classes=2,
                                    pretrained=str(out / 'best.pdparams'))
    assert model.num_classes == 2

    proc = _finetune(two_class_folder, out, start_weights, 2, '--resume', out / 'last')
    assert proc.returncode == 0, proc.stderr
    assert f'resuming from {out / "last"} after epoch 1' in proc.stdout
    assert 'epoch 1:' not in proc.stdout and 'epoch 2: train loss' in proc.stdout
    state = json.loads((out / 'last.json').read_text())
    assert [h['epoch'] for h in state['history']] == [1, 2]


@pytest.mark.full
@pytest.mark.torch
def test_frozen_backbone_changes_only_the_classifier(two_class_folder, start_weights, tmp_path):
    out = tmp_path / 'frozen'
    proc = _finetune(two_class_folder, out, start_weights, 1, '--freeze-backbone')
    assert proc.returncode == 0, proc.stderr
    before = paddle.load(str(start_weights))
    after = paddle.load(str(out / 'last.pdparams'))
    backbone = [k for k in after if not k.endswith(('_mean', '_variance')) and
                not k.startswith('fc.')]
    assert len(backbone) > 100
    changed = [k for k in backbone if not np.array_equal(after[k].numpy(), before[k].numpy())]
    assert changed == []
    assert after['fc.weight'].shape == [2, 256, 1, 1]
    # ...while the classifier, the only part training, learnt: the loss went down.
    steps = json.loads((out / 'last.json').read_text())['history'][0]['step_losses']
    third = len(steps) // 3
    assert np.mean(steps[-third:]) < np.mean(steps[:third]), steps


def test_paddle_hub_lists_and_loads_our_variants(tmp_path):
    paddle.seed(0)
    start_weights = tmp_path / 'dla_46_c.pdparams'
    save_pdparams(paddle_dla.dla_46_c().state_dict(), start_weights)
    assert sorted(paddle.hub.list(REPO, source='local')) == sorted(paddle_dla.list_models())
    model = paddle.hub.load(REPO, 'dla_46_c', source='local', pretrained=str(start_weights))
    assert isinstance(model, paddle_dla.DLA) and model.config.name == 'dla_46_c'
    np.testing.assert_array_equal(model.fc.bias.numpy(),
                                  paddle.load(str(start_weights))['fc.bias'].numpy())
