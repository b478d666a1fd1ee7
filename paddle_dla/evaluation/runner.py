"""The evaluation loop: images decoded in worker processes while the model runs, or in the
main process between batches (the default below ``CORES_PER_WORKER`` cores)."""
import collections
import ctypes
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ProgressStream, Terminated, sigterm_held
from .metrics import topk_hits
from .transforms import ImageReadError


@dataclass
class Tally:
    """What one process saw; tallies of several processes add up (see :meth:`merge`)."""

    images: int = 0
    top1: int = 0
    top5: int = 0
    bad: list = field(default_factory=list)         # [(path, reason)]
    compared: int = 0
    agree: int = 0
    max_logit_diff: float = 0.0
    wait_s: float = 0.0                              # waiting for decoded images
    compute_s: float = 0.0                           # running the model
    wall_s: float = 0.0

    def add_batch(self, logits, labels):
        self.images += len(labels)
        self.top1 += topk_hits(logits, labels, 1)
        self.top5 += topk_hits(logits, labels, 5)

    def add_comparison(self, ours, theirs):
        self.compared += len(ours)
        self.agree += int(np.sum(ours.argmax(1) == theirs.argmax(1)))
        self.max_logit_diff = max(self.max_logit_diff, float(np.abs(ours - theirs).max()))

    @classmethod
    def merge(cls, tallies):
        out = cls()
        for t in tallies:
            for name in ('images', 'top1', 'top5', 'compared', 'agree'):
                setattr(out, name, getattr(out, name) + getattr(t, name))
            out.bad += t.bad
            out.max_logit_diff = max(out.max_logit_diff, t.max_logit_diff)
            for name in ('wait_s', 'compute_s', 'wall_s'):  # the slowest process sets the pace
                setattr(out, name, max(getattr(out, name), getattr(t, name)))
        return out

    @property
    def images_per_sec(self):
        return self.images / self.wall_s if self.wall_s else 0.0


def load_batch(preprocess, samples, skip_bad):
    """Decode one batch; bad images are reported (``skip_bad``) or raise."""
    arrays, labels, bad = [], [], []
    for path, label in samples:
        try:
            arrays.append(preprocess(path))
            labels.append(label)
        except ImageReadError as exc:
            if not skip_bad:
                raise
            bad.append((path, str(exc)))
    batch = np.stack(arrays) if arrays else None
    return batch, labels, bad


# Decoding takes about a tenth of the model's CPU time per image, and the model uses every
# core: one worker per CORES_PER_WORKER cores keeps up. Below that the main process decodes
# between batches, since a worker would preempt the model's threads, which wait for one
# another at every layer (measured on 2 cores: 0 workers fastest).
CORES_PER_WORKER = 4
MAX_DEFAULT_WORKERS = 8


def cpu_cores():
    return os.cpu_count() or 1


def default_workers(cores=None):
    """Decoding processes for a machine of ``cores`` (default: this one); 0 below
    ``CORES_PER_WORKER`` cores, where the main process decodes."""
    return min(MAX_DEFAULT_WORKERS, (cores or cpu_cores()) // CORES_PER_WORKER)


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
DECODER_NICENESS = 10


def _worker_pool(workers):
    """Forked decoding workers. Stop signals stay blocked across the fork until a worker
    has reset its handlers, so even a worker stopped at once exits without a traceback."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    pool = None
    try:
        with sigterm_held():  # the mask is this thread's: another may take the signal
            pool = multiprocessing.get_context('fork').Pool(workers, initializer=_quiet_worker)
        return pool
    except Terminated:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _quiet_worker():
    """Workers leave Ctrl-C and SIGTERM to the main process, which stops them: a worker
    that kept an inherited SIGTERM handler would print a traceback on every shutdown.
    They leave its process group too: paddle.distributed.launch stops a rank with
    ``killpg``, and a worker killed while it waits for work dies holding the task queue's
    lock, on which the rank's ``pool.terminate()`` would then wait until SIGKILL. Instead
    they die with the process that made them (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _yield_to_the_model()
    if _die_with_parent():
        os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _yield_to_the_model():
    """Decode in the CPU time the model leaves: its threads wait for one another at every
    layer, so a decoder that preempts one of them stalls them all."""
    try:
        os.nice(DECODER_NICENESS)
    except (OSError, AttributeError):
        pass


def _die_with_parent():
    """SIGKILL this process when the thread that forked it ends (Linux); False elsewhere."""
    try:
        if ctypes.CDLL(None).prctl(1, int(signal.SIGKILL)) != 0:  # PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):  # no prctl: not Linux
        return False
    if os.getppid() != multiprocessing.parent_process().pid:  # it was gone before prctl
        os._exit(1)
    return True


def _batches(samples, size):
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def decoded_batches(samples, preprocess, batch_size, workers, skip_bad):
    """Yield ``(chunk, batch, labels, bad, waited_s)`` in order. With workers, up to
    ``2 * workers`` batches are decoded ahead in forked processes (a bounded prefetch)."""
    batches = _batches(samples, batch_size)
    if workers <= 0:
        for chunk in batches:
            started = time.perf_counter()
            batch, labels, bad = load_batch(preprocess, chunk, skip_bad)
            yield chunk, batch, labels, bad, time.perf_counter() - started
        return
    pool = _worker_pool(workers)
    try:
        pending = collections.deque()
        queue = iter(batches)

        def submit():
            chunk = next(queue, None)
            if chunk is not None:
                pending.append((chunk, pool.apply_async(load_batch,
                                                        (preprocess, chunk, skip_bad))))
        for _ in range(2 * workers):
            submit()
        while pending:
            started = time.perf_counter()
            chunk, result = pending.popleft()
            batch, labels, bad = result.get()
            submit()
            yield chunk, batch, labels, bad, time.perf_counter() - started
    finally:
        pool.terminate()
        pool.join()


def _show_progress(progress, tally, done, start):
    progress.update(done)
    progress.set_postfix(
        top1=f'{100 * tally.top1 / max(tally.images, 1):.2f}',
        top5=f'{100 * tally.top5 / max(tally.images, 1):.2f}',
        img_s=f'{tally.images / (time.perf_counter() - start):.1f}', refresh=False)


def evaluate(predict, samples, preprocess, batch_size=64, workers=None, skip_bad=False,
             compare=None, progress=None):
    """Run ``predict`` (float32 NCHW -> logits) over ``samples``; returns a :class:`Tally`.

    ``workers``: decoding processes (default: :func:`default_workers`).
    ``compare``, if given, is a second predictor run on the same batches.
    ``progress`` is a tqdm-like bar (``update``/``set_postfix``) or None.
    """
    workers = default_workers() if workers is None else workers
    tally = Tally()
    start = time.perf_counter()
    for chunk, batch, labels, bad, waited in decoded_batches(samples, preprocess, batch_size,
                                                             workers, skip_bad):
        tally.wait_s += waited
        tally.bad += bad
        computed = time.perf_counter()
        if batch is not None:
            logits = predict(batch)
            tally.add_batch(logits, labels)
            if compare is not None:
                tally.add_comparison(logits, compare(batch))
        tally.compute_s += time.perf_counter() - computed
        if progress is not None:
            _show_progress(progress, tally, len(chunk), start)
    tally.wall_s = time.perf_counter() - start
    return tally


def progress_bar(total, desc, enabled=True, unit='img'):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=ProgressStream(), dynamic_ncols=True)
