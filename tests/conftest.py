"""Test tiers and the run without PyTorch.

Markers (registered in pytest.ini):

* ``full``: the heavy cases (every variant x layout x shape, the command line tools end to
  end, gigabyte-sized hostile files). The README's test command runs ``-m "not full"`` (the
  fast tier); ``-m full`` runs the rest. CI runs both.
* ``torch``: needs PyTorch, torchvision or timm in the test process (the timm oracle,
  files written by ``torch.save``). Every other test must pass with none of them installed.
* ``paddle_compat``: touches a Paddle API that changed between Paddle 2.6 and 3.x (export
  and Predictor, training and BatchNorm, .pdparams reading and writing, the evaluation
  harness, the float64 structure); CI runs these on Paddle 2.6 too.
* ``sweep``: one more variant or shape of a ``paddle_compat`` family whose first case is
  not a sweep: it guards the variant, which Paddle 3 does as well as Paddle 2.6, so CI's
  Paddle 2.6 run (``-m "paddle_compat and not sweep"``) leaves it out.

The tests never touch the user's cache: ``PADDLE_DLA_HOME`` (converted weights, exports of
``compile_model``, ONNX translations, the engines chosen per machine) points to a folder of
this run, in this process and every child, unless a test sets its own.

``PADDLE_DLA_TESTS_WITHOUT_TORCH=1`` makes torch, torchvision and timm unimportable here
(before any test module is collected) and in every Python child the tests start (through
``torchless/sitecustomize.py`` on ``PYTHONPATH``), and deselects the tests marked ``torch``.
A test that needs torch without being marked then fails instead of passing unnoticed.
"""
import atexit
import os
import shutil
import sys
import tempfile

import pytest

WITHOUT_TORCH_ENV = 'PADDLE_DLA_TESTS_WITHOUT_TORCH'
WITHOUT_TORCH = os.environ.get(WITHOUT_TORCH_ENV) == '1'
TORCH_MODULES = ('torch', 'torchvision', 'timm')
TORCHLESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torchless')

_HOME = tempfile.mkdtemp(prefix='paddle_dla_tests_home_')
os.environ['PADDLE_DLA_HOME'] = _HOME
atexit.register(shutil.rmtree, _HOME, True)

if WITHOUT_TORCH:
    already = [name for name in TORCH_MODULES if sys.modules.get(name) is not None]
    if already:
        raise pytest.UsageError(f'{WITHOUT_TORCH_ENV}=1, but {", ".join(already)} was imported '
                                f'before the tests were collected (by a pytest plugin?)')
    for name in TORCH_MODULES:
        sys.modules[name] = None  # `import torch` raises ImportError from now on
    os.environ['PYTHONPATH'] = os.pathsep.join(
        p for p in (TORCHLESS, os.environ.get('PYTHONPATH')) if p)


def pytest_report_header(config):
    if WITHOUT_TORCH:
        return (f'{WITHOUT_TORCH_ENV}=1: torch, torchvision and timm blocked (here and in '
                f'child processes); tests marked torch deselected')
    return None


def pytest_collection_modifyitems(config, items):
    if not WITHOUT_TORCH:
        return
    kept = [item for item in items if item.get_closest_marker('torch') is None]
    deselected = [item for item in items if item.get_closest_marker('torch') is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_sessionfinish(session, exitstatus):
    if WITHOUT_TORCH:
        loaded = [name for name in TORCH_MODULES if sys.modules.get(name) is not None]
        if loaded:  # something removed the block and imported them: the run proved nothing
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            print(f'\n{WITHOUT_TORCH_ENV}=1, yet {", ".join(loaded)} got imported', file=sys.stderr)
