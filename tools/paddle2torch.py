#!/usr/bin/env python
"""Convert paddle_dla weights back into a PyTorch (timm) state dict: ``paddle-dla
to-torch``, as a script. Run with --help for examples."""
from _subcommand import run

if __name__ == '__main__':
    run('to_torch')
