"""Argument parsing shared by every command line tool: options are validated while they are
parsed, and a bad one is reported in one line (no usage dump), with exit status 2."""
import argparse
import os
import sys

from ..core.errors import printable
from ..inference.engines import MIN_CALIBRATION_IMAGES
from ..models.preprocessing import MAX_INPUT_SIZE, MIN_INPUT_SIZE
from ..models.registry import get_model, list_models
from ..models.variants import get_config


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line: ``prog: error: ...``."""

    def error(self, message):
        print(f'{self.prog}: error: {printable(message)} (see {self.prog} --help)',
              file=sys.stderr)
        sys.exit(2)


def int_range(low, high=None, what='an integer'):
    """An argparse type: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {what}') from None
        if value < low or (high is not None and value > high):
            bound = f'between {low} and {high}' if high is not None else f'at least {low}'
            raise argparse.ArgumentTypeError(f'{value} is out of range: must be {bound}')
        return value
    parse.__name__ = what
    return parse


def float_range(low, high, low_open=False, what='a number'):
    """An argparse type: a float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {what}') from None
        if not (value > low if low_open else value >= low) or not value <= high:
            raise argparse.ArgumentTypeError(
                f'{value:g} is out of range: must be in {"(" if low_open else "["}{low:g}, '
                f'{high:g}]')
        return value
    parse.__name__ = what
    return parse


def variant_name(text):
    """An argparse type: any accepted spelling of a variant, as our name."""
    try:
        return get_config(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def model_name(text):
    """An argparse type: any model of the registry (any accepted spelling), as our name."""
    try:
        return get_model(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def variant_list(text):
    """An argparse type: ``all`` or a comma list of variants, as our names."""
    if text.strip().lower() == 'all':
        return list_models()
    names = [variant_name(n.strip()) for n in text.split(',') if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError('names no variant')
    return names


def path_text(text):
    """An argparse type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError('an empty path')
    return text


# The limits every tool shares.
positive_int = int_range(1, what='a positive integer')
non_negative_int = int_range(0, what='a non-negative integer')
image_size = int_range(MIN_INPUT_SIZE, MAX_INPUT_SIZE, what='an image size in pixels')
calibration_count = int_range(MIN_CALIBRATION_IMAGES, what='a number of images')


def input_size(text):
    """An argparse type: ``WxH``, a network input's width and height (FairMOT's
    ``img_size`` order, e.g. 1088x608), each in the shared range -> ``(height, width)``."""
    parts = text.lower().split('x')
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f'{text!r} is not WIDTHxHEIGHT (e.g. 576x320)')
    width, height = (image_size(p) for p in parts)
    return height, width


def output_folder(text):
    """An argparse type: an output folder that exists or can be made, and can be written
    to, checked before the work rather than after it."""
    path_text(text)
    if os.path.lexists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f'{text!r} is a file, not a folder')
    existing = os.path.abspath(text)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise argparse.ArgumentTypeError(f'{existing!r} is a file, not a folder')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f'cannot write to folder {existing}')
    return text


def output_file(text):
    """An argparse type: an output file whose folder exists and is writable, checked before
    the work rather than after it."""
    if not text:
        raise argparse.ArgumentTypeError('empty file name')
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f'{text!r} is a folder, not a file name')
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f'no such folder: {folder}')
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f'cannot write to folder {folder}')
    return text
