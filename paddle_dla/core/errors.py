"""The package's exception base, and how every command line tool reports a failure: one
line on stderr (then, for a message of ours written on several lines, its details indented
below), control characters escaped, a traceback only on request."""
import contextlib
import errno
import os
import re
import signal
import sys
import traceback
import unicodedata


class PaddleDLAError(Exception):
    """Base of the errors this package raises on purpose. ``details``: lines that a command
    line prints indented below the one-line error (the sources tried, a command to run);
    kept apart from the message, so a newline inside a name taken from a file or a path
    can never start a line of its own."""

    # Whether a nearly full disk may be the real cause: our errors say their own reason
    # (a hash mismatch, a refused file), except those that check what a library wrote.
    may_mean_a_full_disk = False

    def __init__(self, *args, details=()):
        super().__init__(*args)
        self.details = tuple(str(line) for line in details)

    def __str__(self):
        text = super().__str__()
        return '\n'.join((text, *self.details)) if self.details else text


class CheckpointReadError(PaddleDLAError, ValueError):
    """A weights file could not be read safely; the message names the file."""


class ImageReadError(PaddleDLAError, ValueError):
    """An image file could not be decoded; the message names the file."""


class UnknownName(PaddleDLAError, ValueError):
    """A model, variant or weights tag that no table of the package knows."""


class WeightsNotFound(PaddleDLAError, FileNotFoundError):
    """``pretrained=`` names a file that is not there."""


class UsageError(PaddleDLAError, ValueError):
    """A command line asks for something that cannot be done as asked."""


def printable(text):
    """``text`` with control and other non-printing characters escaped (``\\x1b``), so a
    name taken from a file can never drive the terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return ''.join(c if c.isprintable() or c == ' ' else _escape(c) for c in text)


def _escape(char):
    code = ord(char)
    if unicodedata.category(char) == 'Zs':  # unusual spaces read as spaces
        return ' '
    return f'\\x{code:02x}' if code < 0x100 else f'\\u{code:04x}' if code < 0x10000 \
        else f'\\U{code:08x}'


# The OS's ways of saying a write found no room: the disk, the user's quota, the file size
# limit. Raised by write() and close() they name no file.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def one_line(exc):
    """An exception's message on one printable line; a bare MemoryError says what it means,
    and a full disk says so in the OS's words, with the file being written."""
    if is_disk_full(exc):
        return disk_full_message(exc)
    message = printable(' '.join(str(exc).split()))
    if isinstance(exc, MemoryError):
        return f'out of memory ({message})' if message else 'out of memory'
    return message or type(exc).__name__


def is_disk_full(exc):
    """Whether the OS refused a write for want of room (worth saying as such, not as the
    source's or the model's fault)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def disk_full_message(exc):
    """``no space left on device writing /path``: the errno's text, not ``[Errno 28] ..``."""
    reason = os.strerror(exc.errno)
    reason = reason[:1].lower() + reason[1:]
    name = exc.filename
    if name is None:
        return reason
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    return f'{reason} writing {printable(name)}'


def message_lines(exc):
    """The lines ``report`` prints: the message on one line, then the error's ``details``
    (if any), each on one line of its own, indentation kept, everything escaped."""
    details = getattr(exc, 'details', ())
    if not details:
        return [one_line(exc)]
    head = printable(' '.join(str(exc.args[0] if exc.args else '').split()))
    return [head or type(exc).__name__] + [_detail_line(line) for line in details
                                            if line.strip()]


def _detail_line(line):
    indent = len(line) - len(line.lstrip(' '))
    return ' ' * indent + printable(' '.join(line.split()))


class ProgressStream:
    """Standard error as progress bars write to it, remembering whether their last write
    left a line open (a bar redraws itself after ``\\r`` and ends its line only when it
    closes): an error printed then must first end that line, however the bar was left
    (closed, interrupted mid-draw, or never closed)."""

    line_open = False

    def write(self, text):
        if text:  # noted before writing: an interrupted write errs towards a new line
            # A bar draws itself as '\r' + text; a line ended by '\n', or wiped to '\r' by
            # a bar that does not stay, leaves the cursor at the start of a line.
            type(self).line_open = not text.endswith(('\n', '\r'))
        return sys.stderr.write(text)

    def __getattr__(self, name):  # flush, isatty, fileno, encoding: standard error's own
        return getattr(sys.stderr, name)


def end_progress_lines():
    """Close every progress bar still showing and end the line the last one left open, so
    that an error printed next starts a line of its own instead of joining a bar's text."""
    tqdm = sys.modules.get('tqdm')
    bars = list(getattr(getattr(tqdm, 'tqdm', None), '_instances', None) or ())
    for bar in bars:
        try:
            if not bar.leave:  # such a bar wipes its text but leaves the line open
                ProgressStream.line_open = True
            bar.close()
        except Exception:  # noqa: BLE001 - a broken bar must not hide the error
            ProgressStream.line_open = True
    if ProgressStream.line_open:
        ProgressStream.line_open = False
        print(file=sys.stderr, flush=True)


def report(prog, exc, debug=False):
    """``prog: error: message`` on stderr; a multi-line message's details follow indented."""
    end_progress_lines()
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    first, *details = message_lines(exc)
    print(f'{prog}: error: {first}', file=sys.stderr)
    for line in details:
        print(f'  {line}', file=sys.stderr)


def run_command(prog, action, debug=False):
    """Run a command line tool's work and turn every failure into one line (then the
    details of a message of ours written on several lines) and an exit status: 2 for an
    error, 130 for Ctrl-C, 143 for SIGTERM (partial outputs are removed by the ``finally``
    blocks the interruption unwinds through)."""
    try:
        return action()
    except KeyboardInterrupt as exc:
        return _interrupted(prog, exc)
    except Exception as exc:  # noqa: BLE001 - one line for the user, whatever went wrong
        try:
            report(prog, exc, debug)
        except KeyboardInterrupt as stop:  # the signal that broke a blocking C++ call (EINTR)
            return _interrupted(prog, stop)
        return 2


def _interrupted(prog, exc):
    """``prog: error: interrupted`` or ``... terminated by signal N``: Paddle's static
    conversion re-raises the interruption with its whole traceback as the message, which
    says nothing the user needs."""
    end_progress_lines()
    signal_text = re.search(r'terminated by signal \d+', str(exc))
    print(f'{prog}: error: {signal_text.group(0) if signal_text else "interrupted"}',
          file=sys.stderr)
    return 143 if isinstance(exc, Terminated) else 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` removes its temporary files."""


# SIGTERMs that arrived while :func:`sigterm_held` was in force, or None outside it.
_held_signals = None


@contextlib.contextmanager
def sigterm_held():
    """Hold SIGTERM across a fork: another thread may take the signal while the forking
    one runs the at-fork hooks (logging's, filelock's), where Python ignores an exception,
    and the run would go on as if never stopped. The signal is raised when the block ends."""
    global _held_signals
    outer, _held_signals = _held_signals, []
    try:
        yield
    finally:
        held, _held_signals = _held_signals, outer
        if held:
            raise Terminated(f'terminated by signal {held[0]}')


def exit_cleanly_on_sigterm():
    """Make SIGTERM unwind the stack as SIGINT does. Command line tools call this first, and
    again once Paddle is imported: Paddle's import installs glog's crash handler for SIGTERM
    over ours (a C++ "Termination signal" dump, then death with no cleanup), while
    ``signal.getsignal`` goes on reporting ours."""
    def handler(signum, frame):
        # once: paddle.distributed.launch sends SIGTERM to the process group three times,
        # 0.2 s apart, and a second Terminated would break off the clean-up of the first
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if _held_signals is not None:  # inside a fork: raised when it is over
            _held_signals.append(signum)
            return
        raise Terminated(f'terminated by signal {signum}')
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the default
        pass
