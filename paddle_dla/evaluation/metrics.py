"""Accuracy counting and process layout, shared by the evaluation harness and fine-tuning."""
import io
import os
import sys

import numpy as np


def topk_hits(logits, labels, k):
    """How many rows have their label among their ``k`` highest logits (``k`` is capped at
    the class count, so a 2-class model's top-5 is its top-2)."""
    labels = np.asarray(labels).reshape(-1)
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == labels[:, None], axis=1)))


def distributed_rank(quiet=True):
    """``(rank, world size)``; initialises the process group under
    ``paddle.distributed.launch``, and is ``(0, 1)`` in a plain run. ``quiet`` holds back
    the "Modified FLAGS detected" banner Paddle prints on every start (its own PIR flag);
    what was held back is shown if the set-up fails."""
    world = int(os.environ.get('PADDLE_TRAINERS_NUM', '1'))
    if world <= 1:
        return 0, 1
    import paddle.distributed as dist
    held = io.StringIO()
    saved = sys.stderr
    if quiet:
        sys.stderr = held
    try:
        dist.init_parallel_env()
    except Exception:
        sys.stderr = saved
        sys.stderr.write(held.getvalue())
        raise
    finally:
        # a plain assignment, no call before it (contextlib's __exit__ is one): a SIGTERM
        # that broke off the set-up cannot leave sys.stderr pointing at ``held``
        sys.stderr = saved
    return dist.get_rank(), dist.get_world_size()
