"""Post-training INT8 for CPU: an export quantized with calibration images the caller has
prepared by the model's own recipe, written as a new export that carries the INT8 model.

NNCF quantizes the ONNX translation of the export into OpenVINO: on CPUs with VNNI or AMX,
OpenVINO runs INT8 convolutions several times faster than float, and on AVX2 alone still
faster (README, "INT8 on CPU", says what else was measured). A dense network's deformable
convolutions are read as OpenVINO's own (``openvino_reader``) and stay in float. The INT8
model is an OpenVINO IR (``<prefix>.int8.xml`` and ``.int8.bin``) written beside a copy of
the float export, whose metadata records how it was made. Exports quantized for onnxruntime
by earlier releases (``<prefix>.int8.onnx``) still run there.
"""
import collections.abc
import contextlib
import hashlib
import logging
import os
import shutil
import sys

import numpy as np

from ..core.atomic import atomic_folder_output, write_json
from ..core.digests import CHUNK
from ..core.errors import PaddleDLAError, one_line, printable
from ..core.machine import installed_versions
from ..weights.cache import folder_lock
from .engines import DEFAULT_CALIBRATION_IMAGES, INT8_ENGINE, MIN_CALIBRATION_IMAGES
from .exported import INT8_FILES, META_SUFFIX, MODEL_SUFFIXES, PARAMS_SUFFIX, locate, read_metadata
from .openvino_reader import read_model
from .runtimes import EngineUnavailable, importable, onnx_model

# What making an INT8 model needs: NNCF quantizes paddle2onnx's ONNX model for OpenVINO.
NEEDED = ('nncf', 'openvino', 'paddle2onnx')


class QuantizationError(PaddleDLAError):
    """A model that could not be quantized; nothing was written."""


def _is_classifier(meta):
    return meta.get('task') in (None, 'classification') and bool(meta.get('num_classes'))


def quantization_available():
    """Why an INT8 model cannot be made here, or None when it can."""
    missing = [m for m in NEEDED if not importable(m)]
    return (f'INT8 needs {", ".join(missing)}: pip install {" ".join(NEEDED)}'
            if missing else None)


def classifier_layer(model):
    """The name of the last convolution or matrix product of an OpenVINO model: a
    classifier's ``fc``, whose inputs (pooled features) and weights decide every logit."""
    names = [op.get_friendly_name() for op in model.get_ordered_ops()
             if op.get_type_name() in ('Convolution', 'MatMul')]
    return names[-1]


def as_input(item):
    """One calibration input as the engines take it: float32 ``[1, C, H, W]``."""
    return np.ascontiguousarray(item if np.ndim(item) == 4 else np.asarray(item)[None],
                                dtype=np.float32)


# How our INT8 classifier is made, against NNCF's defaults (README, "INT8 on CPU"): NNCF's
# transformer placement leaves the inputs of BatchNorm, Add and ReduceMean in float, so the
# residual sums and the roots read the convolutions' outputs without a round trip through
# INT8, and OpenVINO needs fewer conversions between INT8 and float; the classifier's ``fc``
# stays in float, as its inputs (the pooled features) decide every logit. Recorded in the
# classifier's metadata and part of its cache key, so that a new scheme makes new models.
SCHEME = 'nncf: transformer placement, performance preset, fc in float'
# A dense network's: NNCF's defaults, into OpenVINO (onnxruntime's until 2026-12-07).
DENSE_SCHEME = 'nncf defaults, openvino'


def scheme_of(dense):
    """The scheme's words, recorded in an INT8 model's metadata."""
    return DENSE_SCHEME if dense else SCHEME


def scheme_tag(dense=False):
    """Eight hex digits naming the scheme of a dense network or a classifier, for cache
    folders: a new scheme makes new INT8 models."""
    return hashlib.sha256(scheme_of(dense).encode()).hexdigest()[:8]


def _import_nncf():
    """NNCF, imported without the warning torch logs when NNCF loads it on a machine with a
    CUDA toolkit and no GPU ("No CUDA runtime is found"): nothing here runs on CUDA."""
    logging.getLogger('torch.utils.cpp_extension').setLevel(logging.ERROR)
    import nncf
    return nncf


def nncf_quantize(onnx_file, calibration, classifier=False, nncf_defaults=False):
    """An OpenVINO model quantized by NNCF on ``calibration`` (a sequence of float32
    ``[1, C, H, W]`` inputs): a classifier by :data:`SCHEME`, anything else, or anything
    with ``nncf_defaults``, by NNCF's defaults."""
    nncf = _import_nncf()

    model = read_model(onnx_file)
    options = {'subset_size': len(calibration)}
    if classifier and not nncf_defaults:
        options.update(model_type=nncf.ModelType.TRANSFORMER,
                       preset=nncf.QuantizationPreset.PERFORMANCE,
                       ignored_scope=nncf.IgnoredScope(names=[classifier_layer(model)]))
    nncf.set_log_level(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):  # its progress bars: not our output
        return nncf.quantize(model, nncf.Dataset(calibration, as_input), **options)


def _tool():
    """``'nncf 3.4.0, openvino 2026.4.1'``: what made the INT8 model, for its metadata."""
    return ', '.join(f'{name} {version}'
                     for name, version in installed_versions(('nncf', INT8_ENGINE)).items())


def _digest_update(sha, item):
    array = as_input(item)
    sha.update(str(array.shape).encode())
    for start in range(0, array.nbytes, CHUNK):
        sha.update(array.data.cast('B')[start:start + CHUNK])


def calibration_digest(calibration):
    """The content of the calibration inputs: what an INT8 model is cached by."""
    known = getattr(calibration, 'sha256', None)
    if known:
        return known
    sha = hashlib.sha256()
    for item in calibration:
        _digest_update(sha, item)
    return sha.hexdigest()


class PreparedImages(collections.abc.Sequence):
    """Calibration inputs prepared from image files each time they are read, so that memory
    holds one at a time: 300 Cityscapes frames at 1024x2048 held together would take 7.5 GB,
    and NNCF reads its dataset once per pass. :meth:`read` checks every file once, keeps
    those that decode and takes the digest on the way; preparing is deterministic, so every
    later pass sees the same inputs."""

    def __init__(self, files, prepare, sha256):
        self.files, self.prepare, self.sha256 = list(files), prepare, sha256

    @classmethod
    def read(cls, files, prepare):
        """``(images, unreadable)``: the files that ``prepare`` reads, and ``(path,
        error)`` for those it refuses (``OSError`` or ``ValueError``)."""
        sha, readable, unreadable = hashlib.sha256(), [], []
        for path in files:
            try:
                item = prepare(path)
            except (OSError, ValueError) as exc:
                unreadable.append((path, exc))
                continue
            _digest_update(sha, item)
            readable.append(path)
        return cls(readable, prepare, sha.hexdigest()), unreadable

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.prepare(self.files[index])


def quantize_export(path_prefix, out_prefix, calibration, source=None, nncf_defaults=False):
    """Write ``out_prefix``: the export at ``path_prefix`` with an INT8 model calibrated on
    ``calibration`` (a sequence of float32 ``[1, C, H, W]`` arrays prepared as the model's
    inputs: a list, or :class:`PreparedImages`). ``source`` says in words where the images
    came from (recorded); ``nncf_defaults`` makes NNCF's default INT8 model instead, the
    anchor the benchmark compares with. Returns the files written; on any failure nothing
    is written."""
    prefix, model_file = locate(path_prefix)
    meta = read_metadata(prefix)
    reason = quantization_available()
    if reason:
        raise EngineUnavailable(reason)
    if len(calibration) < MIN_CALIBRATION_IMAGES:
        raise QuantizationError(f'{len(calibration)} calibration images; INT8 needs at least '
                                f'{MIN_CALIBRATION_IMAGES} (NNCF uses '
                                f'{DEFAULT_CALIBRATION_IMAGES} by default)')
    onnx_file = onnx_model(prefix, model_file)
    classifier = _is_classifier(meta)
    try:
        quantized = nncf_quantize(onnx_file, calibration, classifier=classifier,
                                  nncf_defaults=nncf_defaults)
    except Exception as exc:  # noqa: BLE001 - NNCF and its backends raise many types
        raise QuantizationError(f'NNCF could not quantize {printable(model_file)}: '
                                f'{one_line(exc)}') from None
    out = os.path.abspath(os.fspath(out_prefix))
    folder, name = os.path.split(out)
    meta = dict(meta, int8={
        'engine': INT8_ENGINE, 'tool': _tool(),
        'options': 'nncf defaults' if nncf_defaults else scheme_of(not classifier),
        'calibration': {'images': len(calibration), 'source': source,
                        'sha256': calibration_digest(calibration)}})
    with atomic_folder_output(folder, last=META_SUFFIX, lock=folder_lock(folder)) as tmp:
        stem = os.path.join(tmp, name)
        for suffix in (MODEL_SUFFIXES + (PARAMS_SUFFIX,)):
            if os.path.isfile(prefix + suffix):
                shutil.copyfile(prefix + suffix, stem + suffix)
        import openvino
        openvino.save_model(quantized, stem + INT8_FILES[INT8_ENGINE][0], compress_to_fp16=False)
        write_json(stem + META_SUFFIX, meta, indent=2)
        written = sorted(os.listdir(tmp))
    return [os.path.join(folder, f) for f in written]
