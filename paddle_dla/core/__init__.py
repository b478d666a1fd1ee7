"""The shared core, below everything else and free of Paddle: the exception base and
one-line reporting, outputs written whole or not at all, file digests and what a match
proves, the pickle reader that never runs code, and this machine's CPU and libraries."""
import os

__version__ = '0.3.0'

# The installed package's folder, and the folder holding it (the checkout, when run from one):
# what child processes put on their path and where the package's data lives.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_ROOT = os.path.dirname(PACKAGE_DIR)
