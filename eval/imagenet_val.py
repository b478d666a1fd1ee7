#!/usr/bin/env python
"""Top-1/top-5 of DLA models on ILSVRC2012 val against the published table. See --help."""
import os
import sys

# Paddle 2.6 crashes if torch is imported after it (their bundled zlib builds clash), so a
# run that will use torch imports it first.
if '--compare-torch' in sys.argv or any(a.endswith('.pth') for a in sys.argv):
    try:
        import torch  # noqa: F401
    except ImportError:
        pass

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_dla.evaluation.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
