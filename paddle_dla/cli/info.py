"""``paddle-dla info``: the variants, the published weights and their numbers, and what
this machine runs (versions, CPU features), for bug reports and for choosing a model."""
import platform
import sys

from ..core.machine import CPU_FEATURES, cpu_description, installed_versions
from ..inference.engines import OPTIONAL_ENGINES, PADDLE
from ..models.variants import VARIANTS
from ..weights.registry import list_weights
from . import common
from .args import variant_name

HELP = 'variants, published weights and numbers, versions and CPU features'
DESCRIPTION = ('Show the DLA variants, the published weights with their ImageNet numbers, '
               'and the versions and CPU features of this machine.')
EPILOG = """\
examples:
  paddle-dla info                 # everything
  paddle-dla info --model dla_34  # one variant
"""
USES_PADDLE = False  # versions are read from the installed metadata


def configure(p):
    p.add_argument('--model', type=variant_name, help='only this variant (default: all)')
    p.add_argument('--markdown', action='store_true',
                   help='print the README\'s model table instead, computed from the models '
                        '(about 20 s) (default: off)')
    p.add_argument('--features', action='store_true',
                   help='print the README\'s backbone feature table instead (default: off)')


def _number(value, spec='.3f'):
    return '-' if value is None else format(value, spec)


def run(args):
    if args.markdown or args.features:
        common.load_paddle()
        from ..weights.model_table import feature_markdown, markdown
        print(feature_markdown() if args.features else markdown())
        return 0
    names = [args.model] if args.model else list(VARIANTS)
    print('variants:')
    for name in names:
        c = VARIANTS[name]
        print(f'  {name:<16} timm {c.official_name:<18} levels {c.levels}, {c.block} blocks'
              + (f', cardinality {c.cardinality}' if c.cardinality > 1 else ''))
    print('published weights (top-1 / top-5 on ILSVRC2012 val, params, GMACs at 224):')
    for w in list_weights(args.model):
        print(f'  {w.name:<26} {_number(w.top1):>7} / {_number(w.top5):<7} '
              f'{w.params_m:6.2f} M {w.gmacs:5.1f}  {w.metrics_source or "no published numbers"}')
    cpu, cores, features = cpu_description()
    print(f'python {platform.python_version()} on {platform.system()} {platform.machine()}')
    versions = installed_versions()
    print('packages: ' + ', '.join(f'{k} {v}' for k, v in versions.items()))
    print(f'cpu: {cpu}, {cores} logical cores, features: '
          + (' '.join(features) if features else f'none of {", ".join(CPU_FEATURES)}'))
    print(f'engines: {PADDLE}'
          + ''.join(f', {name}' for name in OPTIONAL_ENGINES if name in versions)
          + ('' if 'paddle2onnx' in versions else
             f' ({" and ".join(OPTIONAL_ENGINES)} read Paddle 3 exports through paddle2onnx: '
             f'not installed)'))
    print(f'executable: {sys.executable}')
    return 0
