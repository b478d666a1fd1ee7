"""What the scripts of this folder share: each runs one ``paddle-dla`` subcommand, from the
installed package or, when none is installed, from the checkout holding this folder."""
import importlib
import os
import sys


def run(module):
    """Exit with what ``paddle_dla.cli.<module>.main`` returns."""
    try:
        import paddle_dla  # noqa: F401
    except ImportError:  # a source checkout that is not installed
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(importlib.import_module(f'paddle_dla.cli.{module}').main())
