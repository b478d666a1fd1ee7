"""The package's layers import only downward, at module top (ARCHITECTURE.md)."""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'paddle_dla')

# Lowest first; a module may import its own layer and those below it.
LAYERS = [
    {'errors', 'digests', 'atomic', 'safe_pickle', 'imagenet', 'variants', 'preprocessing',
     'cli_args', 'engines', 'machine', 'dense_variants', 'decode', 'dense_input', 'drawing'},
    {'layers', 'blocks', 'dla', 'complexity', 'dcn', 'necks', 'dense'},
    {'weights', 'cache', 'exported'},
    {'checkpoint', 'convert', 'convert.readers', 'convert.layouts', 'convert.mapping',
     'convert.detect', 'convert.identify', 'convert.pipeline', 'convert.reverse',
     'convert.verify', 'convert.dense'},
    {'download', 'pretrained', 'runtimes'},
    {'factory', 'dense_factory', 'dense_serving', 'inference', 'model_table', 'benchmark', 'bench_worker', 'evaluation', 'evaluation.transforms',
     'evaluation.dataset', 'evaluation.runner', 'evaluation.report', 'evaluation.metrics'},
    {'cli', 'cli.common', 'cli.convert', 'cli.to_torch', 'cli.evaluate', 'cli.cache', 'cli.export',
     'cli.predict', 'cli.predict_dense', 'cli.bench', 'cli.info', 'cli.eval_worker', '__main__', ''},
]
COMMAND_LINE = {m for m in LAYERS[-1] if m.startswith('cli') or m == '__main__'}
OPTIONAL = {'torch', 'timm', 'torchvision', 'onnx', 'onnxruntime', 'openvino', 'cv2',
            'safetensors', 'paddle2onnx'}


def _modules():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, '.')
                yield (rel[:-len('.__init__')] if rel.endswith('__init__') else
                       '' if rel == '__init__' else rel), path


def _layer(module):
    return next(i for i, layer in enumerate(LAYERS) if module in layer)


def _target(module, node):
    """The package module an import names, or None for anything outside the package."""
    if node.level == 0:
        name = node.module or ''
        return name[len('paddle_dla.'):] if name.startswith('paddle_dla.') else None
    package = module.split('.') if _is_package(module) else module.split('.')[:-1]
    base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
    parts = [p for p in base + (node.module.split('.') if node.module else []) if p]
    return '.'.join(parts)


def _is_package(module):
    path = os.path.join(PACKAGE, *module.split('.')) if module else PACKAGE
    return os.path.isdir(path)


def test_every_module_has_a_layer():
    unplaced = [m for m, _ in _modules() if not any(m in layer for layer in LAYERS)]
    assert unplaced == []


def test_imports_go_downward_at_module_top():
    upward, deferred = [], []
    for module, path in _modules():
        tree = ast.parse(open(path, encoding='utf-8').read())
        top = set(id(n) for n in tree.body)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _target(module, node)
            if target is None:
                continue
            names = [target] if node.module else [
                f'{target}.{a.name}'.lstrip('.') for a in node.names]
            for name in names:
                known = name if any(name in layer for layer in LAYERS) else name.rsplit('.', 1)[0]
                if any(known in layer for layer in LAYERS) and _layer(known) > _layer(module):
                    upward.append(f'{module} -> {known}')
            if id(node) not in top and module not in COMMAND_LINE:
                deferred.append(f'{module}:{node.lineno} {target}')
    assert upward == [] and deferred == []


def test_optional_dependencies_are_not_imported_at_module_top():
    found = []
    for module, path in _modules():
        for node in ast.parse(open(path, encoding='utf-8').read()).body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            found += [f'{module}: {n}' for n in names if n.split('.')[0] in OPTIONAL]
    assert found == []


def test_the_checker_sees_a_violation():
    """An upward import is caught (the checks above are not vacuous)."""
    node = ast.parse('from ..factory import create_model').body[0]
    assert _target('convert.verify', node) == 'factory'
    assert _layer('factory') > _layer('convert.verify')
    node = ast.parse('from . import safe_pickle').body[0]
    assert _target('checkpoint', node) == '' and node.names[0].name == 'safe_pickle'
