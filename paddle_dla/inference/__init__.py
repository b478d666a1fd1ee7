"""The deployed path: ``export`` a model once, open the files with ``Predictor`` on an engine
(Paddle Inference, OpenVINO, onnxruntime), or ``compile_model`` to do both, cached.

``engines`` (the names users pick from) and ``exported`` (the files, read and checked) load
no Paddle; the rest, ``from paddle_dla.inference import Predictor`` included, loads it on
first use, so that command lines answer ``--help`` at once.
"""
import importlib

# The names users reach through this package, and the module that defines each.
_PUBLIC = {name: 'predictor' for name in (
    'AUTO_MEASURED_BATCH', 'ExportError', 'Predictor', 'check_engine', 'compile_model',
    'cpu_supports_bf16', 'describe_engine', 'export', 'installed_engines', 'is_dense_model',
    'weights_digest')}
_PUBLIC.update({name: 'exported' for name in (
    'ExportedModelError', 'META_SUFFIX', 'MODEL_SUFFIXES', 'ModelFileError', 'PARAMS_SUFFIX',
    'check_device', 'read_metadata', 'recipe_of', 'resolve_prefix', 'tensor_shapes')})
_PUBLIC['EngineUnavailable'] = 'runtimes'
_PUBLIC.update({name: 'engines' for name in ('ENGINES', 'ENGINE_CHOICES', 'PRECISIONS')})
_PUBLIC['eager_predictor'] = 'eager'

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name.startswith('__'):
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    # Any other name the deployed path uses (EngineUnavailable, tensor_shapes, ..) as before.
    module = importlib.import_module(f'.{_PUBLIC.get(name, "predictor")}', __name__)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}') from None


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
