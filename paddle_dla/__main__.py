"""``python -m paddle_dla``: the ``paddle-dla`` command."""
import sys

from .cli import main

sys.exit(main())
