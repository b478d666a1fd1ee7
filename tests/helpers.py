"""Shared test helpers: running our CLIs as a user would, and building converted models."""
import os
import subprocess
import sys

import numpy as np
import paddle
import torch

import paddle_dla
from paddle_dla.convert import convert_state_dict
from oracle import oracle_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(script, *args, timeout=300):
    """Run one of the repository's scripts in a subprocess; returns CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def paddle_model_from_oracle(variant, dtype='float64', num_classes=1000, **kwargs):
    """Our model in eval mode with the oracle's weights converted in memory."""
    model = paddle_dla.create_model(variant, num_classes=num_classes, **kwargs)
    if dtype == 'float64':
        model.to(dtype='float64')
    state = convert_state_dict(
        oracle_state_dict(variant, num_classes=num_classes,
                          dtype=torch.float64 if dtype == 'float64' else torch.float32),
        variant, dtype=dtype)
    if kwargs.get('features_only'):
        state = {k: v for k, v in state.items() if not k.startswith(model.unused_checkpoint_prefixes())}
    paddle_dla.load_state_dict_strict(model, state)
    model.eval()
    return model


def run_paddle(model, images):
    """Forward a float64 torch batch through a Paddle model in the model's dtype."""
    dtype = str(model.base_layer[0].weight.dtype).replace('paddle.', '')
    with paddle.no_grad():
        out = model(paddle.to_tensor(images.numpy().astype(dtype)))
    if isinstance(out, (list, tuple)):
        return [o.numpy().astype(np.float64) for o in out]
    return out.numpy().astype(np.float64)
