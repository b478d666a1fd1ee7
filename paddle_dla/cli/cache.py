"""``paddle-dla cache``: what the weights cache holds, filling it ahead of time, checking
it, and emptying it."""
import argparse
import contextlib
import os
import sys

from ..core.errors import UsageError, one_line
from ..weights.cache import (cached_weights_path, compiled_home, compiled_lock_name, lock_path,
                             weights_home)
from ..weights.registry import WEIGHTS, list_weights
from .args import variant_name

HELP = 'list, fetch, verify or clean the pretrained weights cache'
DESCRIPTION = ('The cache of converted published weights ($PADDLE_DLA_HOME, default '
               '~/.cache/paddle_dla), where pretrained=True looks first.')
EPILOG = """\
examples:
  paddle-dla cache list                      # every registry entry, present or missing
  paddle-dla cache fetch                     # download, verify and convert all (network)
  paddle-dla cache fetch --model dla_34      # only one variant's weights
  paddle-dla cache verify                    # every cached file read safely and fits its model
  paddle-dla cache clean --model dla_102     # remove what the cache holds for dla_102
"""
ACTIONS = ('list', 'fetch', 'verify', 'clean')


def configure(p):
    p.add_argument('action', choices=ACTIONS,
                   help='list: entries and their files; fetch: download, verify and convert; '
                        'verify: check the cached files; clean: remove them (without --model '
                        'or --tag: with downloads, exports, INT8 models and engine choices, '
                        'made again on use, and leftovers of interrupted runs)')
    p.add_argument('--model', type=variant_name, help='only this variant (default: all)')
    p.add_argument('--tag', choices=sorted({t for _, t in WEIGHTS}),
                   help='only this weights tag (default: all)')
    p.add_argument('--allow-unverified', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--keep-downloads', action='store_true',
                   help='fetch: keep the raw downloads in $PADDLE_DLA_HOME/downloads (default: '
                        'removed after conversion)')


def selected(args):
    entries = [w for w in list_weights(args.model) if args.tag in (None, w.tag)]
    if not entries:
        raise UsageError(f'no registry entries for --model {args.model} --tag {args.tag}')
    return entries


def refuse_allow_unverified(args):
    """The option of earlier releases: say what took its place rather than not knowing it."""
    if getattr(args, 'allow_unverified', False):
        raise UsageError('--allow-unverified is gone: a file without a published hash is never '
                         'cached; to use one for a run, set PADDLE_DLA_ALLOW_UNVERIFIED=1 and '
                         'load with pretrained=True (or convert the file yourself and pass its '
                         'path)')


def run(args):
    return {'list': list_entries, 'fetch': fetch, 'verify': verify, 'clean': clean}[
        args.action](args)


def list_entries(args):
    from ..weights.pretrained import cache_report
    print(f'cache: {weights_home()}')
    for weights, path, sha256 in cache_report(selected(args)):
        print(f'{weights.name:<26} {"present" if sha256 else "missing":<8} '
              f'{os.path.basename(path):<30} {sha256 or ""}'.rstrip())
    return 0


def fetch(args):
    """Every selected entry downloaded, verified, converted and cached; keeps going past a
    failure and reports each at the end."""
    from ..core.digests import file_digests
    from ..weights.pretrained import load_pretrained_state
    refuse_allow_unverified(args)
    entries = selected(args)
    failures = []
    for weights in entries:
        try:
            load_pretrained_state(weights.variant, weights.tag, args.keep_downloads)
            path = cached_weights_path(weights.variant, weights.tag)
            if not os.path.isfile(path):
                raise UsageError(f'only sources checked more weakly than its {weights.cache_bar} '
                                 f'answered, so nothing was cached (see the warning above)')
            print(f'{weights.name}: ready {path} (sha256 {file_digests(path).sha256})',
                  flush=True)
        except Exception as exc:  # noqa: BLE001 - keep going, report at the end
            failures.append(weights.name)
            print(f'{weights.name}: FAILED {one_line(exc)}', flush=True)
    if failures:
        print(f'{args.prog}: error: {len(failures)} of {len(entries)} weights could not be '
              f'fetched ({", ".join(failures)}); see the lines above', file=sys.stderr)
        return 1
    return 0


def verify(args):
    """Every cached file is read by the safe reader and fits its variant exactly."""
    from ..weights.checkpoint import load_pdparams
    from ..weights.convert.reverse import paddle_to_torch_state
    failures = checked = 0
    for weights in selected(args):
        path = cached_weights_path(weights.variant, weights.tag)
        if not os.path.isfile(path):
            continue
        checked += 1
        try:
            paddle_to_torch_state(load_pdparams(path), weights.variant)  # strict: keys, shapes
            print(f'{weights.name:<26} ok       {path}')
        except Exception as exc:  # noqa: BLE001 - every file is checked, failures counted
            failures += 1
            print(f'{weights.name:<26} BAD      {one_line(exc)}')
    print(f'{checked} cached files checked, {failures} bad'
          + ('; remove them with: paddle-dla cache clean --model NAME' if failures else ''))
    return 1 if failures else 0


def clean(args):
    """Remove the selected entries' files, and (for a full clean) downloads, locks, what
    the deployed path derived (exports, INT8 models, ONNX translations, engine choices: all
    made again on use) and the temporary files of interrupted runs. Only files this package
    names are touched, and nothing another process is using: a lock it holds, or an export
    it is making."""
    home = weights_home()
    doomed = [cached_weights_path(w.variant, w.tag) for w in selected(args)]
    removed, freed, kept, failures = 0, 0, [], []
    if args.model is None and args.tag is None:
        compiled = compiled_home()
        exports = os.path.join(compiled, 'exports')
        for folder in _entries(exports):
            with _unless_in_use(lock_path(compiled_lock_name(_owner(folder))), folder,
                                kept) as free:
                if free:
                    removed, freed = _add((removed, freed), _remove_tree(folder, failures))
        doomed += [path for path in _entries(compiled) if path != exports]
        doomed += _entries(os.path.join(home, 'downloads'))
        doomed += [os.path.join(home, n) for n in sorted(os.listdir(home))
                   if n.startswith('.') and n.endswith(('.tmp', '.part'))] if os.path.isdir(
                       home) else []
        for path in _entries(os.path.join(home, '.locks')):
            with _unless_in_use(path, path, kept) as free:
                if free:  # removed while held: no process takes it meanwhile
                    removed, freed = _add((removed, freed), _remove_tree(path, failures))
    for path in doomed:
        removed, freed = _add((removed, freed), _remove_tree(path, failures))
    for what in kept:
        print(f'kept {what}: another process is using it')
    print(f'{removed} files removed, {freed / 2 ** 20:.1f} MiB freed from {home}')
    return 1 if failures else 0


def _entries(folder):
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))] if os.path.isdir(
        folder) and not os.path.islink(folder) else []


def _add(a, b):
    return a[0] + b[0], a[1] + b[1]


def _owner(path):
    """The export folder a path under ``compiled/exports`` belongs to: itself, or for a
    temporary folder an interrupted or running export left beside it (``.NAME.RANDOM.tmp``),
    NAME."""
    name = os.path.basename(path)
    if name.startswith('.') and name.endswith('.tmp') and name.count('.') >= 3:
        return name[1:].rsplit('.', 2)[0]
    return name


@contextlib.contextmanager
def _unless_in_use(lock_file, what, kept):
    """Yield whether no other process holds the lock at ``lock_file``, holding it meanwhile
    (a folder or a link in its place holds nothing); ``what`` is listed as kept when one
    does."""
    from filelock import FileLock, Timeout
    if not os.path.isfile(lock_file) or os.path.islink(lock_file):
        yield True
        return
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        kept.append(what)
        yield False
        return
    except OSError:  # a lock file nobody can open cannot be held either
        yield True
        return
    if os.name == 'nt':  # Windows deletes no open file: let go first
        lock.release()
        yield True
        return
    try:
        yield True
    finally:
        lock.release()


def _remove_tree(path, failures):
    """Remove ``path`` (a file, a link, or a folder and everything in it, links not
    followed), printing each file; ``(files, bytes)`` removed. A file that cannot be
    removed is said on stderr and added to ``failures``; the rest goes on."""
    count = size = 0
    if os.path.isdir(path) and not os.path.islink(path):
        for name in sorted(os.listdir(path)):
            sub_count, sub_size = _remove_tree(os.path.join(path, name), failures)
            count, size = count + sub_count, size + sub_size
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return count, size
    if os.path.lexists(path):
        size = os.lstat(path).st_size if os.path.isfile(path) else 0
        try:
            os.remove(path)
        except OSError as exc:  # the rest is still cleaned; the status says it
            print(f'paddle-dla cache: could not remove {path}: {exc.strerror or exc}',
                  file=sys.stderr)
            failures.append(path)
            return 0, 0
        print(f'removed {path}')
        return 1, size
    return 0, 0
