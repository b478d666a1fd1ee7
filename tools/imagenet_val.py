#!/usr/bin/env python
"""Top-1/top-5 of DLA models on ILSVRC2012 val against the published table: ``paddle-dla
eval``, kept here for the documentation and scripts that call it by path. See --help."""
import os
import sys

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_dla.cli.evaluate import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
