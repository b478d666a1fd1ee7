#!/usr/bin/env python
"""Convert a PyTorch DLA checkpoint into Paddle weights: ``paddle-dla convert``, as a
script. Run with --help for examples."""
from _subcommand import run

if __name__ == '__main__':
    run('convert')
