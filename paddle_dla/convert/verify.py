"""Check a conversion by running timm's PyTorch model and ours on the same input."""
from dataclasses import dataclass

import numpy as np

from ..variants import get_config

RELATIVE_TOLERANCE = 1e-3   # the float32 parity standard
TOP2_GAP = 1e-2


@dataclass
class VerifyReport:
    max_abs: float
    relative: float
    top1_agree: int
    top1_decided: int
    batch: int

    @property
    def ok(self):
        return self.relative <= RELATIVE_TOLERANCE and self.top1_agree == self.top1_decided

    def __str__(self):
        verdict = 'OK' if self.ok else 'FAILED'
        return (f'max abs logit error {self.max_abs:.3g}, relative {self.relative:.3g} '
                f'(limit {RELATIVE_TOLERANCE:g}), top-1 agreement {self.top1_agree}/'
                f'{self.top1_decided}: {verdict}')


def timm_available():
    try:
        import timm  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def verify_with_timm(variant, torch_state, paddle_state, size=224, batch=2, seed=0):
    """Compare logits of timm's model holding ``torch_state`` with ours holding ``paddle_state``."""
    import paddle
    import timm
    import torch

    from ..factory import create_model
    from ..checkpoint import load_state_dict_strict

    config = get_config(variant)
    num_classes = int(np.shape(paddle_state['fc.weight'])[0])
    reference = timm.create_model(config.official_name, pretrained=False, num_classes=num_classes)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in torch_state.items()}
    missing, unexpected = reference.load_state_dict(tensors, strict=False)
    leftovers = [k for k in missing if not k.endswith('num_batches_tracked')] + list(unexpected)
    if leftovers:
        raise ValueError(f'timm {config.official_name} does not accept the checkpoint: '
                         f'{", ".join(leftovers[:5])}')
    reference.eval()
    ours = create_model(variant, num_classes=num_classes)
    load_state_dict_strict(ours, paddle_state)
    ours.eval()

    images = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype('float32')
    with torch.no_grad():
        theirs = reference(torch.from_numpy(images)).double().numpy()
    with paddle.no_grad():
        mine = ours(paddle.to_tensor(images)).numpy().astype(np.float64)
    max_abs = float(np.abs(mine - theirs).max())
    top2 = np.sort(theirs, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > TOP2_GAP
    agree = int(np.sum(mine.argmax(1)[decided] == theirs.argmax(1)[decided]))
    return VerifyReport(max_abs, max_abs / max(1.0, float(np.abs(theirs).max())), agree,
                        int(decided.sum()), batch)
