"""Accuracy counting and process layout, shared by the evaluation harness and fine-tuning."""
import os

import numpy as np


def topk_hits(logits, labels, k):
    """How many rows have their label among their ``k`` highest logits (``k`` is capped at
    the class count, so a 2-class model's top-5 is its top-2)."""
    labels = np.asarray(labels).reshape(-1)
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return int(np.sum(np.any(top == labels[:, None], axis=1)))


def distributed_rank():
    """``(rank, world size)``; initialises the process group under
    ``paddle.distributed.launch``, and is ``(0, 1)`` in a plain run."""
    world = int(os.environ.get('PADDLE_TRAINERS_NUM', '1'))
    if world <= 1:
        return 0, 1
    import paddle.distributed as dist
    dist.init_parallel_env()
    return dist.get_rank(), dist.get_world_size()
