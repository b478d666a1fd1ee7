"""Put on PYTHONPATH by tests/conftest.py when PADDLE_DLA_TESTS_WITHOUT_TORCH=1, so that every
Python child the tests start (the command line tools, ``python -c`` programs) sees torch,
torchvision and timm as not installed, as the test process itself does."""
import os
import sys

if os.environ.get('PADDLE_DLA_TESTS_WITHOUT_TORCH') == '1':
    for _name in ('torch', 'torchvision', 'timm'):
        sys.modules.setdefault(_name, None)  # `import torch` now raises ImportError
