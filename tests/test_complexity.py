"""Parameter and MAC counts against timm and against the published figures the weights
registry holds (``paddle_dla/weights/registry.py``; test_pretrained.py checks those against the
published table)."""
import pytest

import paddle_dla
from paddle_dla.models.complexity import count_macs, count_params
from paddle_dla.weights.registry import get_weights
from helpers import inspected_model

pytestmark = pytest.mark.paddle_compat


def _within_last_digit(measured, published):
    """Agreement to one unit of the published figure's last digit (its rounding).

    The table prints at least one decimal (22.0), which a float does not remember.
    """
    decimals = max(1, len(repr(float(published)).split('.')[1].rstrip('0')))
    return abs(measured - published) <= 10 ** -decimals + 1e-9


# Every block family fast; the deep ones (seconds of timm construction each) in the full tier.
DEEP = {'dla_60x', 'dla_102', 'dla_102x', 'dla_102x2', 'dla_169'}


@pytest.mark.torch
@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.full) if n in DEEP else n
                                  for n in paddle_dla.list_models()])
def test_parameter_count_matches_timm(name):
    import timm
    model = inspected_model(name)
    theirs = timm.create_model(paddle_dla.get_config(name).official_name)
    assert count_params(model) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize('name', [pytest.param(n, marks=pytest.mark.full) if n in DEEP else n
                                  for n in paddle_dla.list_models()])
def test_counts_match_published(name):
    model = inspected_model(name)
    published = get_weights(name)
    counted = count_params(model, include_buffers=published.params_count_bn_stats) / 1e6
    assert _within_last_digit(counted, published.params_m), (counted, published.params_m)
    assert _within_last_digit(count_macs(model) / 1e9, published.gmacs)


def test_rounding_check_is_not_vacuous():
    assert _within_last_digit(22.078, 22.0) and not _within_last_digit(22.2, 22.0)
    assert _within_last_digit(20.848, 20.85) and not _within_last_digit(20.897, 20.85)
