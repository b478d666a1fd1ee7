"""Small text files read from paths a user gives (label lists, annotation files): a regular
file only (a pipe or device could block for ever), at most a bounded number of bytes, UTF-8
(a byte-order mark dropped), each refusal one line naming the file."""
import os

from .errors import printable


def read_text_file(path, max_bytes, error, kind, too_large, missing_hint=''):
    """The text of ``path``, a ``kind`` of file ('label file'); ``error`` (an exception
    class) is raised naming the file when it is a folder, missing, not a regular file,
    unreadable, over ``max_bytes`` (``too_large`` says why that is too much) or not UTF-8
    (the line and the offending byte named)."""
    path = os.fspath(path)
    shown = printable(path)
    if os.path.isdir(path):
        raise error(f'{shown} is a folder, not a {kind}')
    if not os.path.isfile(path):
        raise error(f'{shown} is not a regular file' if os.path.exists(path)
                    else f'no such {kind}: {shown}{missing_hint}')
    try:
        with open(path, 'rb') as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f'cannot read {kind} {shown}: {exc.strerror or exc}') from None
    if len(data) > max_bytes:
        raise error(f'{shown} is larger than {max_bytes >> 20} MiB; {too_large}')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line = data.count(b'\n', 0, exc.start) + 1
        raise error(f'{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset '
                    f'{exc.start})') from None
    return text[1:] if text.startswith('\ufeff') else text  # the mark some editors write
