"""A pickle reader that rebuilds data and never runs code.

Python's ``pickle`` (and so ``paddle.load`` and a plain ``torch.load``) calls whatever a
file names. This reader knows a short list of names, each mapped to a function of ours that
builds plain data (numeric NumPy arrays, dicts, lists, tuples, strings, numbers); any other
name is refused before anything is called. It also refuses the opcodes that build arbitrary
objects, bounds every read by the bytes the file really has, and checks the loaded tree:
no cycles, no object arrays, nothing but the types above.
"""
import collections
import io
import os
import pickle
import pickletools

import numpy as np

from .errors import CheckpointReadError, printable

NUMERIC_KINDS = 'biuf'  # bool, signed and unsigned integers, floats
_DTYPE_SPECS = frozenset({'b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8',
                          'f2', 'f4', 'f8'})
_SCALARS = (str, bytes, int, float, bool, type(None))
_KEYS = (str, bytes, int, float, bool, type(None))
# Opcodes that build arbitrary objects from classes, and protocol 5's out-of-band buffers.
_REFUSED_OPCODES = {'INST', 'OBJ', 'NEWOBJ', 'NEWOBJ_EX', 'EXT1', 'EXT2', 'EXT4',
                    'BYTEARRAY8', 'NEXT_BUFFER', 'READONLY_BUFFER'}


class Placeholder:
    """Made by the unpickler in place of an object; :meth:`resolve` gives the data."""

    def build(self, state):
        raise CheckpointReadError('unexpected object state')

    def resolve(self):
        raise NotImplementedError


def refused(name, what):
    return CheckpointReadError(
        f'{name} is refused: it asks to build {printable(what)}, and unpickling that could '
        f'run code; a weights file holds only tensors, numbers and strings (save '
        f'model.state_dict() instead)')


class _DtypeSpec(Placeholder):
    def __init__(self, spec):
        self.spec, self.order = spec, '='

    def build(self, state):
        # (version, byte order, subarray, names, fields, elsize, alignment, flags)
        if not (isinstance(state, tuple) and len(state) >= 5 and state[1] in ('<', '>', '|', '=')
                and state[2] is None and state[3] is None and state[4] is None):
            raise CheckpointReadError('unsupported NumPy dtype (structured or sub-array)')
        self.order = state[1]

    def dtype(self):
        return np.dtype(self.spec).newbyteorder(self.order)

    def resolve(self):
        return self.dtype()


def _make_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str) or spec not in _DTYPE_SPECS:
        raise CheckpointReadError(f'refused NumPy dtype {printable(repr(spec))[:40]} (only '
                                  f'numeric arrays are read)')
    return _DtypeSpec(spec)


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in ``_reconstruct(ndarray, ...)``."""


_NDARRAY = _NdarrayClass()


class _Array(Placeholder):
    """``numpy.ndarray`` as pickled: ``_reconstruct`` then a state with shape, dtype, bytes."""

    array = None

    def build(self, state):
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise CheckpointReadError('corrupt NumPy array record')
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DtypeSpec):
            raise CheckpointReadError('corrupt NumPy array record (no numeric dtype)')
        dtype = dtype.dtype()
        if isinstance(raw, str):  # a Python 2 pickle's str, read as latin-1
            raw = raw.encode('latin-1')
        shape = checked_shape(shape)
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != element_count(shape) * \
                dtype.itemsize:
            raise CheckpointReadError(f'corrupt NumPy array record: shape {list(shape)} does '
                                      f'not match its data')
        array = np.frombuffer(raw, dtype=dtype).reshape(shape, order='F' if fortran else 'C')
        self.array = array.astype(dtype.newbyteorder('='), copy=False)

    def resolve(self):
        if self.array is None:
            raise CheckpointReadError('corrupt NumPy array record (no data)')
        return self.array


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise CheckpointReadError('refused an array subclass (only numpy.ndarray is read)')
    return _Array()


def _numpy_scalar(dtype, raw=None):
    if not isinstance(dtype, _DtypeSpec) or not isinstance(raw, (bytes, str)):
        raise CheckpointReadError('corrupt NumPy scalar record')
    raw = raw.encode('latin-1') if isinstance(raw, str) else raw
    dtype = dtype.dtype()
    if len(raw) != dtype.itemsize:
        raise CheckpointReadError('corrupt NumPy scalar record')
    return np.frombuffer(raw, dtype=dtype)[0]


def _latin1_bytes(text, encoding='latin1'):
    """``_codecs.encode``, which protocol-2 pickles use to spell bytes."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise CheckpointReadError('refused _codecs.encode with other arguments than bytes '
                                  'spelt in latin-1')
    return text.encode('latin-1')


def _tuple(items=()):
    if not isinstance(items, (list, tuple)):
        raise CheckpointReadError('refused tuple() of something other than a list or tuple')
    return tuple(items)


NUMPY_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy', 'ndarray'): _NDARRAY,
    ('numpy', 'dtype'): _make_dtype,
    ('_codecs', 'encode'): _latin1_bytes,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'tuple'): _tuple,
    ('__builtin__', 'tuple'): _tuple,
}


def checked_shape(shape):
    """A shape of non-negative Python ints, at most 32 dimensions; anything else is refused."""
    if not isinstance(shape, (tuple, list)) or len(shape) > 32 or not all(
            type(n) is int and n >= 0 for n in shape):
        raise CheckpointReadError(f'corrupt tensor shape {printable(repr(shape))[:60]}')
    return tuple(shape)


def element_count(shape):
    count = 1
    for n in shape:
        count *= n
    return count


# What one file may make the unpickler build beyond its own size: containers copied by
# tuple()/OrderedDict() and arrays, counted in elements and bytes.
BUILD_FACTOR, BUILD_SLACK = 4, 16 << 20


class _BoundedFile:
    """A read-only view of a file that refuses any read past its real end, so a length
    field in the pickle cannot make the reader allocate more than the file holds."""

    def __init__(self, f, size):
        self._f, self._left = f, size

    def read(self, n=-1):
        if n is None or n < 0:
            n = self._left
        if n > self._left:
            raise CheckpointReadError('truncated: a record runs past the end of the file')
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def readline(self):
        line = self._f.readline(self._left)
        self._left -= len(line)
        return line

    def readinto(self, buffer):
        raise CheckpointReadError('out-of-band buffers are not read')


class _Unpickler(pickle._Unpickler):  # the Python implementation: its opcodes can be vetted
    dispatch = {code: load for code, load in pickle._Unpickler.dispatch.items()}

    def __init__(self, f, size, name, allowed, persistent_load=None):
        super().__init__(_BoundedFile(f, size), encoding='latin1')
        self._name, self._allowed, self._persistent = name, allowed, persistent_load
        self._budget = BUILD_FACTOR * size + BUILD_SLACK

    def _charge(self, amount):
        """Count what a record builds; a file that reuses one stored object to build far
        more than it holds (a list copied by a thousand tuple() calls) is refused."""
        self._budget -= amount
        if self._budget < 0:
            raise CheckpointReadError(f'{self._name} is refused: it would build far more data '
                                      f'than the file holds')

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        self._charge(sum(len(a) for a in args
                         if isinstance(a, (list, tuple, dict, str, bytes, bytearray))))
        self.stack[-1] = func(*args)

    def find_class(self, module, attr):
        found = self._allowed.get((module, attr))
        if found is None:
            raise refused(self._name, f'{module}.{attr}')
        return found

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointReadError(f'{self._name}: unexpected external reference')
        return self._persistent(pid)

    def load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, Placeholder):
            target.build(state)
            self._charge(getattr(getattr(target, 'array', None), 'nbytes', 0))
        elif type(target) not in (dict, collections.OrderedDict):
            # Attributes of a plain dict (torch's ``_metadata``) carry no weights; setting
            # attributes on anything else is how a pickle changes live objects.
            raise refused(self._name, f'state for {type(target).__name__}')


_Unpickler.dispatch[pickle.BUILD[0]] = _Unpickler.load_build
_Unpickler.dispatch[pickle.REDUCE[0]] = _Unpickler.load_reduce
for _op in pickletools.opcodes:
    if _op.name in _REFUSED_OPCODES:
        _Unpickler.dispatch.pop(_op.code.encode('latin-1')[0], None)


def load(f, name, allowed=NUMPY_GLOBALS, persistent_load=None, size=None, what='weights file',
         rebuild_tuple=tuple):
    """Unpickle one object from the open binary file ``f`` (at its current position) and
    return it with every :class:`Placeholder` resolved.

    ``allowed`` maps ``(module, name)`` to the function of ours that stands for it.
    ``persistent_load`` handles external references (torch's storages); see
    :func:`materialise` for ``rebuild_tuple``. Anything unexpected raises
    :class:`CheckpointReadError` naming ``name``.
    """
    raw = load_raw(f, name, allowed, persistent_load, size, what)
    return materialise(raw, name, rebuild_tuple=rebuild_tuple)


def named_errors(name, what='weights file'):
    """A context that turns any failure while reading ``name`` into one
    :class:`CheckpointReadError` naming the file."""
    return _NamedErrors(name, what)


class _NamedErrors:
    def __init__(self, name, what):
        self.name, self.what = name, what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, Exception):
            return False
        if isinstance(exc, CheckpointReadError):
            if self.name in str(exc):
                return False
            raise CheckpointReadError(f'{self.name}: {exc}') from None
        if isinstance(exc, MemoryError):
            raise CheckpointReadError(f'{self.name} is corrupt (a record asks for more memory '
                                      f'than the machine has)') from None
        if isinstance(exc, RecursionError):
            raise CheckpointReadError(f'{self.name} is corrupt (nested too deeply)') from None
        text = ' '.join(str(exc).split())[:120] or type(exc).__name__
        raise CheckpointReadError(f'{self.name} is not a readable {self.what} (corrupt or '
                                  f'truncated: {printable(text)})') from None


def load_raw(f, name, allowed=NUMPY_GLOBALS, persistent_load=None, size=None,
             what='weights file'):
    """As :func:`load`, but placeholders are left for the caller to resolve later
    (a torch legacy file's storages follow the pickle that refers to them)."""
    if size is None:
        here = f.tell()
        size = len(f.getbuffer()) - here if hasattr(f, 'getbuffer') else \
            os.fstat(f.fileno()).st_size - here
    with named_errors(name, what):
        try:
            return _Unpickler(f, size, name, allowed, persistent_load).load()
        except KeyError as exc:
            code = exc.args[0] if exc.args else None
            record = (f'opcode {bytes([code])!r}' if isinstance(code, int) and 0 <= code < 256
                      else 'record')
            raise CheckpointReadError(f'{name} is not a readable {what} (corrupt, or a pickle '
                                      f'{record} that builds objects)') from None


def materialise(root, name, resolve=None, rebuild_tuple=tuple):
    """The loaded tree with placeholders replaced by data; refuses cycles and any type
    besides dict, list, tuple, str, bytes, numbers, None and numeric arrays.
    ``rebuild_tuple`` makes each tuple from its rebuilt items (a format's own records).

    Iterative, so a deeply nested file cannot exhaust the stack; a shared sub-tree is
    rebuilt once, so repeated references cannot blow up the work.
    """
    with named_errors(name):
        return _materialise(root, name, resolve or (lambda p: p.resolve()), rebuild_tuple)


def _materialise(root, name, resolve, rebuild_tuple):
    done, expanding = {}, set()
    stack = [(root, False)]
    while stack:
        obj, children_done = stack.pop()
        key = id(obj)
        if key in done:
            continue
        if isinstance(obj, Placeholder):
            done[key] = (obj, _checked_leaf(resolve(obj), name))
            continue
        if not isinstance(obj, (dict, list, tuple)):
            done[key] = (obj, _checked_leaf(obj, name))
            continue
        children = list(obj.values()) if isinstance(obj, dict) else list(obj)
        if not children_done:
            expanding.add(key)
            stack.append((obj, True))
            for child in children:
                if id(child) in expanding:
                    raise CheckpointReadError(f'{name} is refused: it refers to itself (a '
                                              f'cycle), which no weights file needs')
                if id(child) not in done:
                    stack.append((child, False))
            continue
        expanding.discard(key)
        built = [done[id(child)][1] for child in children]
        if isinstance(obj, dict):
            bad = next((k for k in obj if not isinstance(k, _KEYS)), None)
            if bad is not None:
                raise CheckpointReadError(f'{name} is refused: a dict key of type '
                                          f'{type(bad).__name__}')
            done[key] = (obj, dict(zip(obj.keys(), built)))
        else:
            done[key] = (obj, built if isinstance(obj, list) else rebuild_tuple(built))
    return done[id(root)][1]


def _checked_leaf(value, name):
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in NUMERIC_KINDS:
            raise CheckpointReadError(f'{name} is refused: an array of dtype {value.dtype}')
        return value
    if isinstance(value, np.generic):
        if value.dtype.kind not in NUMERIC_KINDS:
            raise CheckpointReadError(f'{name} is refused: a scalar of dtype {value.dtype}')
        return value
    if isinstance(value, _SCALARS):
        return value
    raise CheckpointReadError(f'{name} is refused: it holds a {type(value).__name__}')


def loads(data, name, allowed=NUMPY_GLOBALS):
    """:func:`load` from bytes."""
    return load(io.BytesIO(data), name, allowed, size=len(data))
