"""``convert --verify`` beside a torchvision that does not belong to the installed torch.

Such a torchvision fails at import with ``operator torchvision::nms does not exist`` (what
PyPI's torchvision does beside a torch of another release). The tests put a package that
fails the same way, with its own version metadata, ahead of the real one on the child's
``PYTHONPATH``: the converter must name both versions and the fix before converting, and a
conversion without the check must not need torch at all."""
import subprocess
import sys

import pytest

from helpers import child_env, stderr_lines
from torch_files import official_layout, save_state_dict

pytestmark = pytest.mark.torch  # the check gets as far as importing the real torch

BROKEN_VERSION = '0.99.0'


@pytest.fixture
def broken_torchvision(tmp_path):
    """A folder to put first on PYTHONPATH: torchvision that cannot load its operators."""
    folder = tmp_path / 'site'
    package = folder / 'torchvision'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    info = folder / f'torchvision-{BROKEN_VERSION}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: torchvision\n'
                                   f'Version: {BROKEN_VERSION}\n')
    return folder


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / 'mine.pth'
    save_state_dict(official_layout('dla_46_c'), path)
    return path


def _convert(checkpoint, dst, site, *extra):
    env = child_env()
    env['PYTHONPATH'] = f'{site}:{env["PYTHONPATH"]}'
    return subprocess.run([sys.executable, '-m', 'paddle_dla', 'convert', '--src',
                           str(checkpoint), '--dst', str(dst), *extra], capture_output=True,
                          text=True, timeout=300, env=env)


def test_verify_names_the_mismatched_pair_before_converting(tmp_path, checkpoint,
                                                           broken_torchvision):
    import torch
    dst = tmp_path / 'out.pdparams'
    proc = _convert(checkpoint, dst, broken_torchvision, '--verify')
    assert proc.returncode != 0
    (line,) = stderr_lines(proc)
    assert line.startswith('paddle-dla convert: error: --verify cannot run: '), line
    assert f'torchvision {BROKEN_VERSION} does not belong with torch' in line
    assert torch.__version__.split('+')[0] in line and 'matching pair' in line
    assert 'torchvision::nms' in line and 'leave out --verify' in line
    assert 'Traceback' not in proc.stderr
    assert not dst.exists() and list(tmp_path.glob('.out.pdparams*')) == []


@pytest.mark.full  # the fast tier keeps one case of this item
def test_without_verify_the_broken_torchvision_is_never_touched(tmp_path, checkpoint,
                                                               broken_torchvision):
    dst = tmp_path / 'out.pdparams'
    proc = _convert(checkpoint, dst, broken_torchvision)
    assert proc.returncode == 0, proc.stderr
    assert dst.is_file() and 'dla_46_c' in proc.stdout
