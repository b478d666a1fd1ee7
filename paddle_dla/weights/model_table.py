"""The README's tables, derived from the variants, the models themselves and the weights
registry. ``paddle-dla info --markdown [--features]`` prints them; a test keeps the
README in step."""
import paddle

from ..models.complexity import count_macs, count_params
from ..models.dla import DLA
from ..models.variants import VARIANTS
from .registry import DEFAULT_TAG, get_weights

HEADER = ('| model | timm / official name | params (M) | GMACs @224 | top-1 | top-5 | '
          'published by |\n|---|---|---|---|---|---|---|')


def model_rows():
    rows = []
    for name, config in VARIANTS.items():
        paddle.seed(0)
        model = DLA(config)
        weights = get_weights(name, DEFAULT_TAG)
        rows.append(f'| `{name}` | `{config.official_name}` | {count_params(model) / 1e6:.2f} | '
                    f'{count_macs(model) / 1e9:.2f} | {weights.top1:.3f} | {weights.top5:.3f} | '
                    f'{weights.metrics_source} |')
    return rows


def markdown():
    return '\n'.join([HEADER] + model_rows())


def feature_markdown(size=224):
    """``features_only`` output shapes (C x H x W) of levels 1..5 at ``size`` px."""
    lines = ['| model | level1 | level2 | level3 | level4 | level5 |', '|---|---|---|---|---|---|']
    for name, config in VARIANTS.items():
        with paddle.LazyGuard():
            info = DLA(config, features_only=True).feature_info
        cells = [f'{c}x{size // r}x{size // r}' for c, r in zip(info.channels(), info.reduction())]
        lines.append(f'| `{name}` | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
