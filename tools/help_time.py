#!/usr/bin/env python
"""How long every command line takes to answer ``--help`` on this machine: ``paddle-dla``,
each of its subcommands and each script, each in a fresh process, best of --rounds. The
target is under a second: parsing must not load Paddle, PyTorch or the models.

    python tools/help_time.py            # prints a table; exits 1 if one is over --limit
"""
import argparse
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ('tools/torch2paddle.py', 'tools/paddle2torch.py', 'tools/imagenet_val.py',
           'tools/throughput.py', 'examples/finetune.py')


def commands():
    sys.path.insert(0, REPO)
    from paddle_dla.cli import SUBCOMMANDS
    yield 'paddle-dla', [sys.executable, '-m', 'paddle_dla']
    for name in SUBCOMMANDS:
        yield f'paddle-dla {name}', [sys.executable, '-m', 'paddle_dla', name]
    for script in SCRIPTS:
        yield script, [sys.executable, os.path.join(REPO, script)]


def seconds(argv):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get('PYTHONPATH')) if p))
    start = time.perf_counter()
    proc = subprocess.run(argv + ['--help'], capture_output=True, text=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or 'usage:' not in proc.stdout:
        raise SystemExit(f'help_time.py: error: {" ".join(argv[1:])} --help failed: '
                         f'{proc.stderr.strip().splitlines()[-1:]}')
    return elapsed


def main():
    parser = argparse.ArgumentParser(prog='help_time.py', description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=3,
                        help='runs per command, the best counts (default: %(default)s)')
    parser.add_argument('--limit', type=float, default=1.0,
                        help='seconds allowed (default: %(default)s)')
    args = parser.parse_args()
    python = [sys.executable, '-c', 'pass']
    baseline = min(seconds_of(python) for _ in range(args.rounds))
    print(f'| command | --help (s) | python start-up: {baseline:.2f} s |\n|---|---|---|')
    slow = []
    for name, argv in commands():
        best = min(seconds(argv) for _ in range(args.rounds))
        slow += [name] if best > args.limit else []
        print(f'| {name} | {best:.2f} | {"over the limit" if best > args.limit else ""} |')
    if slow:
        print(f'help_time.py: {len(slow)} commands over {args.limit} s: {", ".join(slow)}',
              file=sys.stderr)
        return 1
    return 0


def seconds_of(argv):
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


if __name__ == '__main__':
    sys.exit(main())
