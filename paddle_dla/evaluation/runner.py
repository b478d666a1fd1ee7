"""The evaluation loop: images decoded in worker processes while the model runs, or in the
main process between batches (the default below ``CORES_PER_WORKER`` cores)."""
import collections
import ctypes
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import PaddleDLAError, ProgressStream, sigterm_held
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


class DecoderDied(PaddleDLAError, RuntimeError):
    """A decoding worker ended in the middle of the run."""


# How often a wait for a decoded batch looks whether a worker has died.
WORKER_CHECK_S = 0.5


class _Decoders:
    """Forked decoding workers. A ``ProcessPoolExecutor``, not a ``multiprocessing.Pool``:
    a Pool replaces a worker that dies but loses its batch, which is then awaited forever,
    and a replacement forked by the Pool's own thread is killed with that thread (see
    ``_die_with_parent``) while it may hold the task queue's lock, on which stopping the
    Pool then waits; the executor forks every worker at once from this thread and fails
    the awaited batch instead."""

    def __init__(self, workers):
        """Stop signals stay blocked across the fork until a worker has reset its handlers,
        so even a worker stopped at once exits without a traceback."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        self.executor, self.processes = None, []
        try:
            with sigterm_held():  # the mask is this thread's: another may take the signal
                before = {child.pid for child in multiprocessing.active_children()}
                self.executor = ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context('fork'),
                    initializer=_quiet_worker)
                self.executor.submit(int).result()   # forks every worker, here and now
                self.processes = [child for child in multiprocessing.active_children()
                                  if child.pid not in before]
        except BaseException:
            self.stop()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def submit(self, chunk, *args):
        try:
            return self.executor.submit(*args)
        except BrokenProcessPool:
            raise self._died(chunk) from None

    def stop(self):
        """End the workers at once, busy or not (SIGTERM, which they do not catch), then
        the executor's thread. A worker ended while it was sending a batch leaves that
        thread waiting for the rest of the message, forever while this process holds the
        pipe's other end: closing it lets the thread read the end of the pipe instead
        (the executor offers no other way)."""
        for process in self.processes:
            if process.exitcode is None:
                process.terminate()
        for process in self.processes:
            process.join()
        if self.executor is None:
            return
        writer = getattr(getattr(self.executor, '_result_queue', None), '_writer', None)
        if writer is not None:
            writer.close()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def decoded(self, future, chunk):
        """One batch's decoding; a worker that died (killed by the out-of-memory killer,
        a crash in a decoder) ends the run in one line."""
        while True:
            try:
                return future.result(timeout=WORKER_CHECK_S)
            except BrokenProcessPool:
                raise self._died(chunk) from None
            except FutureTimeout:  # the executor misses a worker killed mid-send: look
                if any(process.exitcode is not None for process in self.processes):
                    raise self._died(chunk) from None

    def _died(self, chunk):
        # A dead worker's pipes close before it can be reaped: give its exit a moment.
        deadline = time.monotonic() + 1.0
        ended = []
        while not ended and time.monotonic() < deadline:
            ended = [p.exitcode for p in self.processes if p.exitcode is not None]
            time.sleep(0 if ended else 0.01)
        how = f'{_how_it_ended(ended[0])}; ' if ended else ''
        return DecoderDied(
            f'a decoding worker died ({how}out of memory?) before the batch from '
            f'{chunk[0][0]} was decoded: rerun with --workers 0 to decode in this process, '
            'which names an unreadable image')


def _how_it_ended(exitcode):
    if exitcode < 0:
        try:
            return f'killed by {signal.Signals(-exitcode).name}'
        except ValueError:
            return f'killed by signal {-exitcode}'
    return f'exit code {exitcode}'


def _quiet_worker():
    """Workers leave Ctrl-C and SIGTERM to the main process, which stops them: a worker
    that kept an inherited SIGTERM handler would print a traceback on every shutdown.
    They leave its process group too: paddle.distributed.launch stops a rank with
    ``killpg``, and the rank stops its own workers in order; and they die with the thread
    that forked them (Linux), the main thread, should the rank be killed outright."""
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
    decoders = _Decoders(workers)
    try:
        pending = collections.deque()
        queue = iter(batches)

        def submit():
            chunk = next(queue, None)
            if chunk is not None:
                pending.append((chunk, decoders.submit(chunk, load_batch, preprocess, chunk,
                                                       skip_bad)))
        for _ in range(2 * workers):
            submit()
        while pending:
            started = time.perf_counter()
            chunk, future = pending.popleft()
            batch, labels, bad = decoders.decoded(future, chunk)
            submit()
            yield chunk, batch, labels, bad, time.perf_counter() - started
    finally:
        decoders.stop()


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
