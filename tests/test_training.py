"""Training behaves as the reference: BN statistics, gradients, and loss going down."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import paddle_dla
from helpers import FLOAT64_LIMIT, relative_error

pytestmark = pytest.mark.paddle_compat

STRUCTURE_TOL = FLOAT64_LIMIT
NAME = 'dla_60_res2next'  # bottleneck, grouped convs, res2net splits and an avg-pool branch


def _bn_pairs(torch_model, paddle_model):
    theirs = {k: v for k, v in torch_model.state_dict().items()}
    ours = paddle_model.state_dict()
    for key, value in ours.items():
        if key.endswith(('_mean', '_variance')):
            torch_key = key.replace('._mean', '.running_mean').replace('._variance', '.running_var')
            yield key, value.numpy(), theirs[torch_key].numpy()


@pytest.mark.torch
def test_one_train_step_updates_bn_statistics_and_gradients_as_the_oracle():
    import torch
    from oracle import oracle, paddle_model_from_oracle, random_images
    reference = oracle(NAME)
    ours = paddle_model_from_oracle(NAME, 'float64')
    images = random_images((4, 3, 64, 64))
    labels = np.array([1, 5, 7, 999])
    reference.train()
    ours.train()

    ref_loss = torch.nn.functional.cross_entropy(reference(images), torch.from_numpy(labels))
    ref_loss.backward()
    our_loss = F.cross_entropy(ours(paddle.to_tensor(images.numpy())), paddle.to_tensor(labels))
    our_loss.backward()
    assert abs(float(our_loss) - ref_loss.item()) <= STRUCTURE_TOL

    pairs = list(_bn_pairs(reference, ours))
    assert len(pairs) > 100
    before = paddle_model_from_oracle(NAME, 'float64').state_dict()
    for key, mine, theirs in pairs:
        assert not np.allclose(mine, before[key].numpy()), f'{key} did not move'
        assert relative_error(mine, theirs) <= STRUCTURE_TOL, key

    torch_grads = {k: p.grad.numpy() for k, p in reference.named_parameters()}
    trainable = [(k, p) for k, p in ours.named_parameters() if not p.stop_gradient]
    assert len(trainable) == len(torch_grads)
    for key, param in trainable:
        assert relative_error(param.grad.numpy(), torch_grads[key]) <= STRUCTURE_TOL, key


def test_bn_momentum_equals_pytorch_default():
    model = paddle_dla.dla_34()
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert bns and all(abs(bn._momentum - 0.9) < 1e-12 and bn._epsilon == 1e-5 for bn in bns)


def test_sgd_steps_lower_the_loss_and_eval_mode_is_deterministic():
    paddle.seed(0)
    model = paddle_dla.dla_46_c(num_classes=4, drop_rate=0.2)
    images = paddle.randn([8, 3, 32, 32])
    labels = paddle.to_tensor([0, 1, 2, 3, 0, 1, 2, 3])
    optimizer = paddle.optimizer.Momentum(0.05, parameters=model.parameters(), momentum=0.9)
    model.train()
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    model.eval()
    with paddle.no_grad():
        assert np.array_equal(model(images).numpy(), model(images).numpy())
