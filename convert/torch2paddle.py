#!/usr/bin/env python
"""Convert a PyTorch DLA checkpoint into Paddle weights. Run with --help for examples."""
import os
import sys

# Paddle 2.6 crashes if torch is imported after it (their bundled zlib builds clash); this
# tool uses PyTorch when it is installed (legacy .pth files, --verify), so it imports it first.
try:
    import torch  # noqa: F401
except ImportError:
    pass

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_dla.convert.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
