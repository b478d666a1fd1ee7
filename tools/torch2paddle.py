#!/usr/bin/env python
"""Convert a PyTorch DLA checkpoint into Paddle weights: ``paddle-dla convert``, kept here
for the documentation and scripts that call it by path. Run with --help for examples."""
from _subcommand import run

if __name__ == '__main__':
    run('convert')
