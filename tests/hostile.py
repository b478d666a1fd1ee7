"""Tools for the hostile-input tests: files that would run code if loaded carelessly, and
command line runs under a memory bound whose refusals are checked as a user sees them."""
import os
import pickle
import resource
import subprocess
import sys

import numpy as np

from helpers import REPO, child_env, stderr_lines
# Paddle and torch together map about 4 GiB of address space at start; a hostile file that
# made a reader allocate gigabytes would cross this bound and fail the test.
MEMORY_LIMIT = 5 << 30


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious
    checkpoint does. Loading it safely must leave ``marker`` absent."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class OpenPayload(Payload):
    """The same through ``builtins.open``, which needs no shell."""

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def hostile_pdparams(path, marker, protocol=4):
    """A ``.pdparams``-shaped pickle (numeric arrays and Paddle's name table) with a payload."""
    state = {'fc.weight': np.zeros((10, 512, 1, 1), np.float32), 'trap': Payload(marker),
             'StructuredToParameterName@@': {'fc.weight': 'conv2d_0.w_0'}}
    with open(path, 'wb') as f:
        pickle.dump(state, f, protocol=protocol)
    return path


def _limit_memory(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_bounded(argv, env=None, cwd=REPO, timeout=180, memory=MEMORY_LIMIT, stdin=None):
    """Run ``argv`` with its address space capped at ``memory`` bytes."""
    return subprocess.run(argv, capture_output=True, text=True, env=child_env(**(env or {})),
                          cwd=cwd, timeout=timeout, preexec_fn=_limit_memory(memory),
                          stdin=subprocess.DEVNULL if stdin is None else stdin)


def run_script(script, *args, **kwargs):
    """One of the repository's scripts (``tools/torch2paddle.py``, ...) as a user runs it."""
    return run_bounded([sys.executable, os.path.join(REPO, script), *map(str, args)], **kwargs)


def run_module(*args, **kwargs):
    """``python -m paddle_dla ...`` (the ``paddle-dla`` command)."""
    return run_bounded([sys.executable, '-m', 'paddle_dla', *map(str, args)], **kwargs)


def run_python(code, *args, **kwargs):
    """A short program using the public API, e.g. ``create_model(pretrained=...)``."""
    return run_bounded([sys.executable, '-c', code, *map(str, args)], **kwargs)


def assert_refused(proc, *phrases, absent=()):
    """A clean refusal: non-zero exit, exactly one line on stderr holding ``phrases`` (the
    file's name among them), no traceback, and none of the ``absent`` paths exists."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert 'Traceback' not in proc.stderr
    for phrase in phrases:
        assert str(phrase) in lines[0], (phrase, lines[0])
    for path in absent:
        assert not os.path.exists(path), f'{path} was left behind'
    return lines[0]


def leftovers(folder, before=()):
    """Files under ``folder`` that were not in ``before`` (temporary files included)."""
    found = set()
    for root, _, files in os.walk(folder):
        found.update(os.path.join(root, f) for f in files)
    return sorted(found - set(before))
