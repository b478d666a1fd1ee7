"""Shared test helpers that need neither torch nor timm: running the repository's scripts as
a user would, and feeding a batch through a Paddle model. (The timm oracle and everything
built from it live in ``oracle.py`` and ``checkpoint_files.py``, which import torch.)"""
import functools
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle

import paddle_dla
from paddle_dla.core.parity import (  # noqa: F401 - the tests read the standard here
    FLOAT32_LIMIT, FLOAT64_LIMIT, TOP2_GAP, relative_error, top1_agreement)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def built_once(tmp_path_factory, name, build):
    """``build(folder)``'s result (JSON: paths as strings), made once for the whole test run
    in a folder every pytest-xdist process sees: the first to ask builds it, the others wait
    on its lock and read it back, rather than build it again (a module's fixture is built in
    each process that runs one of its tests)."""
    import filelock
    root = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        root = root.parent  # the run's, above each process's own
    folder, result = root / f'shared-{name}', root / f'shared-{name}.json'
    with filelock.FileLock(str(root / f'shared-{name}.lock')):
        if not result.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed
            folder.mkdir()
            result.write_text(json.dumps(build(folder)))
        return json.loads(result.read_text())


def child_env(**extra):
    """``os.environ`` for a child Python: this checkout first on ``PYTHONPATH``, keeping what
    the test run put there (the torch blocker of ``PADDLE_DLA_TESTS_WITHOUT_TORCH=1``)."""
    path = os.pathsep.join(p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


@functools.lru_cache(maxsize=None)
def inspected_model(name):
    """A freshly initialised ``name``, built once per run for the tests that only count or
    inspect it: do not train, convert or load weights into it."""
    return paddle_dla.create_model(name)


def run_cli(script, *args, timeout=300):
    """Run one of the repository's scripts in a subprocess; returns CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(REPO, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=child_env())


def stderr_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def top1_agrees(ours, reference, min_gap=TOP2_GAP):
    """Same top-1 on every row whose reference top-2 gap exceeds ``min_gap`` (the parity
    standard; random weights can leave no row that clear, and then only the logit error
    speaks)."""
    agreeing, decided = top1_agreement(ours, reference, min_gap)
    return agreeing == decided


def run_paddle(model, images):
    """Forward a float64 batch (NumPy or torch) through a Paddle model in the model's dtype."""
    dtype = str(model.base_layer[0].weight.dtype).replace('paddle.', '')
    with paddle.no_grad():
        out = model(paddle.to_tensor(np.asarray(images).astype(dtype)))
    if isinstance(out, (list, tuple)):
        return [o.numpy().astype(np.float64) for o in out]
    return out.numpy().astype(np.float64)


# Logits this far apart cannot swap under float32 noise (about 1e-3).
CLEAR_GAP = 0.01


def pick_label(logits, ranks, min_gap=CLEAR_GAP):
    """The class at the first of ``ranks`` whose neighbours in the ranking are clearly
    apart from it (so float32 noise cannot move it): ``(label, rank)`` or None. Labelling
    images this way makes the expected top-1 and top-5 of an evaluation known exactly."""
    order = np.argsort(-logits)
    ranked = logits[order]
    for rank in ranks:
        i = rank - 1
        above = ranked[i - 1] - ranked[i] if i > 0 else np.inf
        if min(above, ranked[i] - ranked[i + 1]) > min_gap:
            return int(order[i]), rank
    return None
