"""The script ``paddle-dla eval --nproc N`` hands to ``paddle.distributed.launch``: one rank
of the evaluation (the launcher runs scripts by path, not modules)."""
import sys

from paddle_dla.cli.evaluate import main

if __name__ == '__main__':
    sys.exit(main())
