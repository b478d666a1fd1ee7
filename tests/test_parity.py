"""Every variant against the timm oracle: float64 structure and converted float32 weights."""
import pytest

import paddle_dla
from helpers import FLOAT32_LIMIT, FLOAT64_LIMIT, relative_error, run_cli, run_paddle, top1_agrees

pytestmark = pytest.mark.torch

ALL = paddle_dla.list_models()
LARGE_SHAPE_VARIANTS = ['dla_34', 'dla_102x2', 'dla_60_res2next']
# The four deepest take 5-8 s each in float64: the full tier holds them, the fast tier the rest.
DEEP_VARIANTS = ['dla_102', 'dla_102x', 'dla_102x2', 'dla_169']
SHAPES = [(2, 3, 64, 64)]
EXTRA_SHAPES = [(1, 3, 224, 224), (2, 3, 96, 160)]

STRUCTURE_TOL = FLOAT64_LIMIT
FLOAT32_TOL = FLOAT32_LIMIT


def _cases(*marks):
    """Every variant at 64 px (the deep four in the full tier, the others fast); three of
    them at the larger shapes too (full)."""
    deep = (pytest.mark.full, pytest.mark.sweep, *marks)
    for name in ALL:
        yield pytest.param(name, SHAPES[0], marks=deep if name in DEEP_VARIANTS else marks)
        if name in LARGE_SHAPE_VARIANTS:
            for shape in EXTRA_SHAPES:
                yield pytest.param(name, shape, marks=(pytest.mark.full, *marks))


@pytest.mark.parametrize('name,shape', list(_cases(pytest.mark.paddle_compat)))
def test_float64_structure_matches_oracle(name, shape):
    from oracle import oracle, paddle_model_from_oracle, random_images, reference_logits
    images = random_images(shape)
    reference = reference_logits(oracle(name), images)
    ours = run_paddle(paddle_model_from_oracle(name, 'float64'), images)
    assert ours.shape == reference.shape == (shape[0], 1000)
    assert relative_error(ours, reference) <= STRUCTURE_TOL


@pytest.fixture(scope='module')
def converted_by_cli(tmp_path_factory):
    """Each variant's oracle saved as a timm-layout .pth and converted with the CLI."""
    import torch
    from oracle import oracle_state_dict
    folder = tmp_path_factory.mktemp('converted')
    cache = {}

    def get(name):
        if name not in cache:
            src, dst = folder / f'{name}.pth', folder / f'{name}.pdparams'
            torch.save(oracle_state_dict(name, dtype=torch.float32), src)
            proc = run_cli('tools/torch2paddle.py', '--src', src, '--model', name, '--dst', dst)
            assert proc.returncode == 0, proc.stderr
            assert name in proc.stdout and str(dst) in proc.stdout
            src.unlink()
            cache[name] = dst
        return cache[name]
    return get


@pytest.mark.full  # one command line conversion per variant; the fast tier converts one
@pytest.mark.parametrize('name,shape', list(_cases()))  # file per layout in test_convert_layouts
def test_cli_converted_float32_matches_oracle(name, shape, converted_by_cli):
    from oracle import oracle, random_images, reference_logits
    model = paddle_dla.create_model(name, pretrained=str(converted_by_cli(name)))
    model.eval()
    images = random_images(shape)
    reference = reference_logits(oracle(name), images)
    ours = run_paddle(model, images)
    assert relative_error(ours, reference) <= FLOAT32_TOL
    assert top1_agrees(ours, reference)


def test_tolerances_detect_a_real_mistake():
    """A plausible porting slip (one BN bias zeroed) must fail both tolerances by far."""
    from oracle import oracle, paddle_model_from_oracle, random_images, reference_logits
    name = 'dla_34'
    images = random_images(SHAPES[0])
    reference = reference_logits(oracle(name), images)
    model = paddle_model_from_oracle(name, 'float64')
    bias = model.level3.tree1.tree2.bn2.bias
    bias.set_value(bias.numpy() * 0)
    assert relative_error(run_paddle(model, images), reference) > 100 * FLOAT32_TOL
