#!/usr/bin/env python
"""Images per second of DLA, every engine side by side: ``paddle-dla bench``, kept here
for the documentation and scripts that call it by path. Run with --help for examples."""
import os
import sys

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_dla.cli.bench import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
