"""How every command line tool reports a failure: one line on stderr, a traceback only on
request."""
import sys
import traceback


def one_line(exc):
    return ' '.join(str(exc).split()) or type(exc).__name__


def report(prog, exc, debug=False):
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(f'{prog}: error: {one_line(exc)}', file=sys.stderr)
