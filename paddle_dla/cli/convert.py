"""``paddle-dla convert`` (and ``tools/torch2paddle.py``): PyTorch DLA checkpoints to
``.pdparams``."""
import argparse
import os
import sys

from ..core.atomic import same_file
from ..core.digests import file_digests
from ..core.errors import UsageError, one_line, printable, report
from ..models.dense_variants import DENSE_VARIANTS
from ..models.variants import VARIANTS
from ..weights.cache import cached_weights_path, weights_home
from ..weights.registry import list_weights
from . import cache, common
from .args import model_name

CHECKPOINT_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors', '.pth.tar', '.ckpt')

EPILOG = """\
examples:
  # an official checkpoint from dl.yf.io (dead 'project' keys are dropped, variant recognised)
  paddle-dla convert --src dla34-ba72cf86.pth
  # the timm mirror's re-saved file, checked against timm's own model
  paddle-dla convert --src dla60-9e91bd4d.pth --verify
  # a Hugging Face timm/dla102.in1k file (read without torch)
  paddle-dla convert --src model.safetensors --model dla_102 --dst dla_102.pdparams
  # your fine-tuned training checkpoint ({'state_dict': ...}, 'module.' keys, 10 classes)
  paddle-dla convert --src runs/best.pth --model dla_34 --dst dla_34_pets.pdparams
  # CenterNet / FairMOT ({'epoch', 'state_dict'}) and ucbdrive DLA-Up segmentation files
  paddle-dla convert --src ctdet_coco_dla_2x.pth
  paddle-dla convert --src fairmot_dla34.pth --dst fairmot_dla34.pdparams
  # every checkpoint in a folder
  paddle-dla convert --src checkpoints/ --dst converted/
  # prepare the cache for pretrained=True ahead of time, then see what it holds
  paddle-dla convert --all
  paddle-dla convert --list-cache

Published checkpoints are written to $PADDLE_DLA_HOME (default ~/.cache/paddle_dla), where
pretrained=True finds them; other files are written beside their source unless --dst is given.
"""


HELP = 'convert PyTorch DLA checkpoints into Paddle .pdparams'
DESCRIPTION = ('Convert PyTorch DLA checkpoints (official .pth, timm .pth, Hugging Face '
               '.safetensors, training checkpoints, and the dense CenterNet, FairMOT and DLA-Up '
               'ones) into Paddle .pdparams, strictly: every key must map with the right shape. '
               'Never runs code from a checkpoint.')


def configure(parser):
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--src', help='checkpoint file, or a folder of checkpoints to convert them all (required: '
                           'one of --src, --all or --list-cache)')
    what.add_argument('--all', action='store_true',
                      help='fetch and convert every published checkpoint of the weights registry '
                           'into the cache ahead of time (with --model/--tag: only those); the same as '
                           'paddle-dla cache fetch (required: this, --src or --list-cache)')
    what.add_argument('--list-cache', action='store_true',
                      help='list the cache: each registry entry present or missing, with sha256; the '
                           'same as paddle-dla cache list (required: this, --src or --all)')
    parser.add_argument('--tag', help='with --all: only this weights tag, official or tricks (default: all)')
    parser.add_argument('--allow-unverified', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--keep-downloads', action='store_true',
                        help='with --all: keep the raw downloaded checkpoints in '
                             '$PADDLE_DLA_HOME/downloads (default: removed after conversion)')
    parser.add_argument('--model', type=model_name,
                        help=f'variant (recognised from the keys when omitted): '
                             f'{", ".join(VARIANTS)}; timm names work too; or a dense model: '
                             f'{", ".join(DENSE_VARIANTS)} (default: recognised)')
    parser.add_argument('--dst', help='output .pdparams file, a folder with a folder --src (default: the cache for '
                             'a published checkpoint, else beside the source)')
    parser.add_argument('--verify', action='store_true',
                        help='compare logits with timm\'s PyTorch model (needs torch and timm); '
                             'exit non-zero beyond the float32 parity standard (default: no comparison)')
    parser.add_argument('--no-hash-check', action='store_true',
                        help='accept a file whose content does not match the hash in its name '
                             '(default: refuse it)')


def _pdparams_name(path):
    """``runs/best.pth`` -> ``runs/best.pdparams``."""
    for suffix in CHECKPOINT_SUFFIXES:
        if path.endswith(suffix):
            return path[:-len(suffix)] + '.pdparams'
    return path + '.pdparams'


def default_destination(conversion, prog):
    """The cache for a file verified at its registry entry's strongest check, else beside the
    source (saying why, when the file matched a published one only at a weaker check)."""
    if conversion.cacheable:
        return cached_weights_path(conversion.variant, conversion.tag)
    why = conversion.why_not_cached()
    if why:
        print(f'{prog}: warning: {printable(conversion.source_path)} is not cached as official '
              f'weights: {why}; writing it beside the source', file=sys.stderr, flush=True)
    return _pdparams_name(conversion.source_path)


def _names(dst, slot):
    """Whether ``dst`` names the cache file ``slot``, however spelt: links, a bind mount of
    the folder, another letter case where the file system ignores it."""
    if os.path.realpath(dst) == os.path.realpath(slot) or same_file(dst, slot):
        return True
    return (same_file(os.path.dirname(os.path.abspath(dst)), os.path.dirname(slot)) and
            os.path.basename(dst).casefold() == os.path.basename(slot).casefold())


def refuse_cache_destination(dst, conversion=None, given=True):
    """Only a file verified at the entry's strongest check may become a cached official
    file: a destination naming one (however spelt) is refused for anything else."""
    for weights in list_weights():
        cached = cached_weights_path(weights.variant, weights.tag)
        if not _names(dst, cached):
            continue
        if conversion is not None and conversion.cacheable and \
                (conversion.variant, conversion.tag) == (weights.variant, weights.tag):
            return
        why = (conversion.why_not_cached() if conversion is not None else None) or \
            f'the file is not verified as the published {weights.name} weights'
        named = f'--dst {printable(dst)}' if given else \
            f'the destination beside the source, {printable(dst)},'
        raise UsageError(f'{named} is the cached {weights.name} weights, which only a file '
                         f'verified by its {weights.cache_bar} may become: {why}; choose '
                         f'another --dst (nothing was written)')


def into_folder(dst, src):
    """A --dst that is a folder receives the file under the source's name, as cp does."""
    if os.path.isdir(dst):
        return os.path.join(dst, os.path.basename(_pdparams_name(src)))
    return dst


def refuse_overwriting_source(src, dst):
    """The destination must not be the source, however it is spelt (links included)."""
    if same_file(src, dst):
        raise UsageError(f'--dst {printable(dst)} is the source file itself; converting would '
                       f'replace it: choose another destination')


def convert_one(src, dst, args):
    """Convert one file, from one read of it (what is verified is what is converted);
    returns the summary line, raises on any problem."""
    from ..weights.convert.readers import snapshot
    if not os.path.isfile(src):
        return _convert_one(src, dst, args)  # the pipeline names what is wrong
    with snapshot(src):
        return _convert_one(src, dst, args)


def _convert_one(src, dst, args):
    from ..weights.checkpoint import save_pdparams
    from ..weights.convert.dense import dense_checkpoint_or_none
    from ..weights.convert.pipeline import convert_checkpoint
    from ..weights.convert.verify import verify_with_timm
    dense, raw = dense_checkpoint_or_none(src, args.model)
    if dense is not None:
        return convert_dense_one(src, dst, dense, args)
    conversion = convert_checkpoint(src, args.model, check_hash=not args.no_hash_check,
                                    raw=raw)
    verdict = None
    if args.verify:
        verdict = verify_with_timm(conversion.variant, conversion.torch_state, conversion.state)
        if not verdict.ok:
            raise ValueError(f'verification against timm failed for {conversion.variant}: '
                             f'{verdict}; nothing was written')
    given = dst is not None
    dst = into_folder(dst, src) if given else default_destination(conversion, args.prog)
    refuse_overwriting_source(src, dst)
    refuse_cache_destination(dst, conversion, given)
    save_pdparams(conversion.state, dst)
    line = (f'{printable(src)}: {conversion.describe_source()} -> {conversion.variant}, '
            f'tag {conversion.tag or "-"}, {conversion.num_classes} classes, '
            f'{conversion.num_params:,} parameters, {conversion.dead_keys_dropped} dead keys '
            f'dropped -> {printable(dst)} (sha256 {file_digests(dst).sha256})')
    if verdict is not None:
        line += '\n  verify: ' + str(verdict)
    return line


def convert_dense_one(src, dst, conversion, args):
    """Write a converted CenterNet / FairMOT / DLA-Up checkpoint; returns the summary line."""
    from ..weights.checkpoint import save_pdparams
    if args.verify:
        raise UsageError(f'--verify compares classifiers with timm, which has no '
                         f'{conversion.name}; the dense models are held to their PyTorch '
                         f'reference by the test suite. Leave out --verify; nothing was written')
    given = dst is not None
    dst = into_folder(dst, src) if given else _pdparams_name(src)
    refuse_overwriting_source(src, dst)
    refuse_cache_destination(dst, given=given)
    save_pdparams(conversion.state, dst)
    dropped = [f'{n} {what}' for n, what in (
        (conversion.classifier_dropped, 'base.fc tensors (the ImageNet classifier, unused)'),
        (conversion.dead_keys_dropped, 'dead project tensors')) if n]
    return (f'{printable(src)}: {conversion.describe()} -> {conversion.name}, '
            f'{conversion.num_params:,} parameters'
            + (f', dropped {" and ".join(dropped)}' if dropped else '')
            + f' -> {printable(dst)} (sha256 {file_digests(dst).sha256})\n'
            f'  load it with create_model({conversion.name!r}, pretrained={printable(dst)!r})')


def checkpoints_in(folder):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.endswith(CHECKPOINT_SUFFIXES) and not f.startswith('.'))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise UsageError(f'no checkpoints ({", ".join(CHECKPOINT_SUFFIXES)}) in folder '
                       f'{printable(folder)}')
    return files


def main(argv=None, prog='torch2paddle'):
    return common.script_main(sys.modules[__name__], prog, argv)


def uses_torch(args):
    return args.verify


def run(args):
    cache.refuse_allow_unverified(args)
    if args.list_cache:  # the cache's own commands, under their older names
        return cache.list_entries(argparse.Namespace(model=None, tag=None))
    if args.all:
        return cache.fetch(args)
    if args.verify:
        refuse_broken_torch()
    if not os.path.isdir(args.src):
        print(convert_one(args.src, args.dst, args))
        return 0
    return convert_folder(checkpoints_in(args.src), args)


def refuse_broken_torch():
    """--verify needs a working torch, torchvision and timm: say before converting anything
    what is wrong with them, rather than fail after the conversion with nothing written."""
    from ..weights.convert.verify import torch_stack_problem
    problem = torch_stack_problem()
    if problem:
        raise UsageError(f'--verify cannot run: {problem}; or leave out --verify to convert '
                         f'without the comparison (nothing was written)')


def convert_folder(files, args):
    """Convert every file, going on past failures; one summary line for those."""
    failures = []
    for src in files:
        dst = os.path.join(args.dst, _pdparams_name(os.path.basename(src))) if args.dst else None
        try:
            print(convert_one(src, dst, args), flush=True)
        except Exception as exc:  # noqa: BLE001 - keep going, report at the end
            if args.debug:
                report(args.prog, exc, debug=True)
            failures.append((src, one_line(exc)))
    print(f'converted {len(files) - len(failures)} of {len(files)} checkpoints in {args.src}'
          + (f' (cache: {weights_home()})' if not args.dst else ''))
    if failures:
        print(f'{args.prog}: error: {len(failures)} of {len(files)} checkpoints failed: '
              + '; '.join(f'{printable(os.path.basename(s))}: {why}' for s, why in failures),
              file=sys.stderr)
        return 1
    return 0

