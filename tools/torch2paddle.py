#!/usr/bin/env python
"""Convert a PyTorch DLA checkpoint into Paddle weights: ``paddle-dla convert``, kept here
for the documentation and scripts that call it by path. Run with --help for examples."""
import os
import sys

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_dla.cli.convert import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
