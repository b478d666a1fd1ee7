"""Check a conversion by running timm's PyTorch model and ours on the same input."""
from dataclasses import dataclass

import numpy as np
import paddle

from ...core.errors import one_line
from ...core.parity import FLOAT32_LIMIT, relative_error, top1_agreement
from ...models.dla import DLA
from ...models.variants import get_config, state_num_classes
from ..checkpoint import load_state_dict_strict
from .reverse import paddle_to_torch_state


@dataclass
class VerifyReport:
    max_abs: float
    relative: float
    top1_agree: int
    top1_decided: int
    batch: int

    @property
    def ok(self):
        return self.relative <= FLOAT32_LIMIT and self.top1_agree == self.top1_decided

    def __str__(self):
        verdict = 'OK' if self.ok else 'FAILED'
        return (f'max abs logit error {self.max_abs:.3g}, relative {self.relative:.3g} '
                f'(limit {FLOAT32_LIMIT:g}), top-1 agreement {self.top1_agree}/'
                f'{self.top1_decided}: {verdict}')


def _installed_version(distribution):
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return 'unknown'


def torch_stack_problem():
    """None when torch, torchvision (which timm imports) and timm load; else one sentence
    naming the package that fails and how to mend it. A torchvision built for another torch
    fails at import with a RuntimeError such as ``operator torchvision::nms does not exist``."""
    import importlib
    for package in ('torch', 'torchvision', 'timm'):
        try:
            importlib.import_module(package)
        except ImportError as exc:
            return (f"comparing with timm's PyTorch model needs torch, torchvision and timm "
                    f'({one_line(exc)}): pip install torch torchvision timm')
        except Exception as exc:  # noqa: BLE001 - a broken install raises anything at import
            return _broken(package, exc)
    return None


def _broken(package, exc):
    torch_version = _installed_version('torch')
    if package == 'torchvision':
        return (f'torchvision {_installed_version("torchvision")} does not belong with torch '
                f'{torch_version} ({one_line(exc)}): the two must be a matching pair; install '
                f'the torchvision release made for torch {torch_version} (the compatibility '
                f'table in the torchvision README names it)')
    return (f'{package} {_installed_version(package)} fails to import ({one_line(exc)}): '
            f'reinstall it (pip install --force-reinstall {package})')


def timm_available():
    return torch_stack_problem() is None


def timm_reference(variant, torch_state):
    """timm's eval-mode model of ``variant`` holding ``torch_state`` (torch naming, classes
    read from its classifier). Every key must fit; the BatchNorm counters may be absent."""
    import timm
    import torch

    config = get_config(variant)
    reference = timm.create_model(config.official_name, pretrained=False,
                                  num_classes=state_num_classes(torch_state))
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in torch_state.items()}
    missing, unexpected = reference.load_state_dict(tensors, strict=False)
    leftovers = [k for k in missing if not k.endswith('num_batches_tracked')] + list(unexpected)
    if leftovers:
        raise ValueError(f'timm {config.official_name} does not accept the checkpoint: '
                         f'{", ".join(leftovers[:5])}')
    return reference.eval()


def timm_holding(model):
    """timm's model holding the weights of our ``model`` (for side-by-side comparisons)."""
    _, state = paddle_to_torch_state(model.state_dict(), model.config.name)
    return timm_reference(model.config.name, state)


def torch_predictor(reference):
    """A timm model as a numpy-in, numpy-out callable without gradients."""
    import torch

    def predict(batch):
        with torch.no_grad():
            return reference(torch.from_numpy(batch)).numpy()
    return predict


def verify_with_timm(variant, torch_state, paddle_state, size=224, batch=2, seed=0):
    """Compare logits of timm's model holding ``torch_state`` with ours holding ``paddle_state``."""
    reference = timm_reference(variant, torch_state)
    ours = DLA(get_config(variant), num_classes=state_num_classes(paddle_state))
    load_state_dict_strict(ours, paddle_state)
    ours.eval()

    images = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype('float32')
    theirs = torch_predictor(reference)(images).astype(np.float64)
    with paddle.no_grad():
        mine = ours(paddle.to_tensor(images)).numpy().astype(np.float64)
    agree, decided = top1_agreement(mine, theirs)
    return VerifyReport(float(np.abs(mine - theirs).max()), relative_error(mine, theirs), agree,
                        decided, batch)
