"""The test suite's own switch (tests/conftest.py): PADDLE_DLA_TESTS_WITHOUT_TORCH=1 makes
torch, torchvision and timm unimportable in pytest and in the Python children it starts."""
import os
import subprocess
import sys

import pytest

from conftest import TORCH_MODULES, TORCHLESS, WITHOUT_TORCH, WITHOUT_TORCH_ENV
from helpers import child_env

# Prints "<name> blocked" or "<name> importable" for each name; an import is tried only
# where the module is blocked (importing torch for real would take seconds).
PROBE = ('import importlib, importlib.util, sys\nfor name in {names!r}:\n'
         '    if sys.modules.get(name, 0) is None:\n        try:\n'
         '            importlib.import_module(name)\n        except ImportError:\n'
         '            print(name, "blocked")\n            continue\n'
         '    print(name, "importable" if importlib.util.find_spec(name) else "absent")')


def _probe(env):
    proc = subprocess.run([sys.executable, '-c', PROBE.format(names=TORCH_MODULES)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split('\n')[:-1]


def test_the_switch_blocks_torch_in_children():
    """What the switch puts on PYTHONPATH blocks the three, and only when it is on."""
    path = os.pathsep.join([TORCHLESS, os.environ.get('PYTHONPATH', '')])
    env = dict(child_env(), PYTHONPATH=path, **{WITHOUT_TORCH_ENV: '1'})
    assert _probe(env) == [f'{name} blocked' for name in TORCH_MODULES]


@pytest.mark.torch
def test_without_the_switch_children_can_import_torch():
    env = dict(child_env(), **{WITHOUT_TORCH_ENV: '0'})
    env['PYTHONPATH'] = os.pathsep.join([TORCHLESS, env['PYTHONPATH']])
    assert _probe(env) == [f'{name} importable' for name in TORCH_MODULES]


@pytest.mark.skipif(not WITHOUT_TORCH, reason=f'checks the run with {WITHOUT_TORCH_ENV}=1')
def test_this_run_has_no_torch():
    for name in TORCH_MODULES:
        with pytest.raises(ImportError):
            __import__(name)
    assert _probe(child_env()) == [f'{name} blocked' for name in TORCH_MODULES]
