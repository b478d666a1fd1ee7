"""The parity standard every comparison with a reference is held to: the converter's
``--verify``, the benchmark's logit check and the tests read it from here.

relative error = max|ours - reference| / max(1, max|reference|)
"""
import numpy as np

FLOAT64_LIMIT = 1e-7   # the same structure, computed in float64
FLOAT32_LIMIT = 1e-3   # what users run
# bfloat16 keeps 8 bits of mantissa: two engines' bf16 kernels differ by about 1e-2.
BFLOAT16_LIMIT = 5e-2
# The top-1 must agree on every row whose reference top-2 gap exceeds this: closer logits
# may swap under float32 noise.
TOP2_GAP = 1e-2


def relative_error(ours, reference):
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(ours - reference)) / max(1.0, float(np.max(np.abs(reference)))))


def top1_agreement(ours, reference, min_gap=TOP2_GAP):
    """``(agreeing, decided)``: of the rows whose reference top-2 gap exceeds ``min_gap``
    (``decided``), how many have the same top-1 in ``ours``."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    ours, reference = ours.reshape(len(ours), -1), reference.reshape(len(reference), -1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > min_gap
    agreeing = int(np.sum(ours.argmax(1)[decided] == reference.argmax(1)[decided]))
    return agreeing, int(decided.sum())
