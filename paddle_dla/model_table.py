"""The README's model table, derived from the variants, the models themselves and the
weights registry. ``python -m paddle_dla.model_table`` prints it; a test keeps the README
in step."""
import paddle

from .complexity import count_macs, count_params
from .dla import DLA
from .variants import VARIANTS
from .weights import DEFAULT_TAG, get_weights

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


if __name__ == '__main__':
    print(markdown())
