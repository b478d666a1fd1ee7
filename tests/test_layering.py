"""The package's folders are its layers: a folder imports only itself and the folders
below it (ARCHITECTURE.md), at module top; no module imports in a circle."""
import ast
import os
import re

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'paddle_dla')
ARCHITECTURE = os.path.join(os.path.dirname(PACKAGE), 'ARCHITECTURE.md')

# Lowest first. A module's folder is the first part of its name ('' is the package's own
# __init__, the public face, above everything).
LAYERS = ['core', 'models', 'weights', 'zoo', 'tasks', 'tracking', 'inference', 'evaluation',
          'benchmarking', 'cli', '__main__', '']
# Command lines import their work inside run() so that --help loads nothing heavy.
DEFERRING = {'cli'}
MAX_FLAT_MODULES = 6
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


def folder(module):
    return module.split('.')[0]


def _is_package(module):
    path = os.path.join(PACKAGE, *module.split('.')) if module else PACKAGE
    return os.path.isdir(path)


def _absolute(name):
    """``paddle_dla.x.y`` -> ``x.y``, ``paddle_dla`` -> '' (the package's own __init__),
    anything else -> None."""
    if name == 'paddle_dla':
        return ''
    return name[len('paddle_dla.'):] if name.startswith('paddle_dla.') else None


def _target(module, node, is_package=None):
    """The package module an import names, or None for anything outside the package."""
    if node.level == 0:
        return _absolute(node.module or '')
    package = module.split('.') if (_is_package(module) if is_package is None else is_package) \
        else module.split('.')[:-1]
    base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
    return '.'.join(p for p in base + (node.module.split('.') if node.module else []) if p)


def _top_level(tree):
    """The statements that run on import: the module's body, and what top-level ``try``,
    ``if`` and ``with`` blocks hold."""
    found, pending = set(), list(tree.body)
    while pending:
        node = pending.pop()
        found.add(id(node))
        if isinstance(node, (ast.Try, ast.If, ast.With)):
            pending += node.body + getattr(node, 'orelse', []) + getattr(node, 'finalbody', [])
            pending += [s for h in getattr(node, 'handlers', []) for s in h.body]
    return found


def imports_of(module, source, is_package=None):
    """``(target module, line, at module top)`` for every import of the package's own."""
    tree = ast.parse(source)
    top = _top_level(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = [_target(module, node, is_package)]
        elif isinstance(node, ast.Import):
            targets = [_absolute(alias.name) for alias in node.names]
        else:
            continue
        for target in targets:
            if target is not None:
                yield target, node.lineno, id(node) in top


def violations(module, source, is_package=None):
    """What in ``source`` (the text of ``module``) breaks the folders' order."""
    found = []
    for target, line, at_top in imports_of(module, source, is_package):
        if target and folder(target) not in LAYERS:
            continue  # a name from the package's own __init__ (e.g. __version__)
        if LAYERS.index(folder(target)) > LAYERS.index(folder(module)):
            found.append(f'{module}:{line} imports {target or "paddle_dla"}, a higher folder')
        elif not at_top and folder(module) not in DEFERRING:
            found.append(f'{module}:{line} imports {target} inside a function')
    return found


def test_every_folder_has_a_layer_and_few_modules_stand_flat():
    folders = {folder(m) for m, _ in _modules()}
    assert folders - set(LAYERS) == set()
    flat = [n for n in os.listdir(PACKAGE) if n.endswith('.py')]
    assert len(flat) <= MAX_FLAT_MODULES, flat


def test_the_architecture_lists_the_folders_in_this_order():
    """ARCHITECTURE.md's table of folders, lowest first, is the order checked here."""
    text = open(ARCHITECTURE, encoding='utf-8').read()
    rows = re.findall(r'^\| `(\w+)/` \|', text, re.M)
    assert rows == [name for name in LAYERS if name and name != '__main__'], rows


def test_every_folder_says_its_job_and_is_drawn_in_the_architecture():
    text = open(ARCHITECTURE, encoding='utf-8').read()
    for name in LAYERS:
        path = os.path.join(PACKAGE, name, '__init__.py')
        if not name or not os.path.exists(path):
            continue
        doc = ast.get_docstring(ast.parse(open(path, encoding='utf-8').read()))
        assert doc and len(doc) > 40, f'{name}/__init__.py says nothing of its job'
        assert re.search(rf'`{name}/`', text), f'ARCHITECTURE.md does not name {name}/'


def test_imports_go_downward_at_module_top():
    found = []
    for module, path in _modules():
        found += violations(module, open(path, encoding='utf-8').read())
    assert found == []


def test_no_module_imports_in_a_circle():
    graph = {}
    for module, path in _modules():
        graph[module] = {t for t, _, at_top in imports_of(module, open(path, encoding='utf-8').read())
                         if at_top and t != module}
    modules = set(graph)

    def resolved(name):  # 'from .x import y' where y is a module: the edge goes to x.y
        return name if name in modules else name.rsplit('.', 1)[0] if '.' in name else name

    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 'open'
        for nxt in sorted({resolved(t) for t in graph.get(node, ())} & modules):
            if state.get(nxt) == 'open':
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 'done'

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own modules is no circle of work.
    cycles = [c for c in cycles if not any(c[i + 1].startswith(c[i] + '.') or c[i] == ''
                                           for i in range(len(c) - 1))]
    assert cycles == []


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


def test_the_checker_catches_a_violation():
    """The checks above are not vacuous: an upward import, a deferred one outside the
    command line, and the same written absolutely are each reported; a downward one is not."""
    upward = 'from ...zoo.classifier import create_model\n'
    assert violations('weights.convert.verify', upward, is_package=False) == [
        'weights.convert.verify:1 imports zoo.classifier, a higher folder']
    absolute = 'import os\nfrom paddle_dla.inference import Predictor\n'
    assert violations('tasks.serving', absolute, is_package=False) == [
        'tasks.serving:2 imports inference, a higher folder']
    deferred = 'def f():\n    from ..core.errors import one_line\n'
    assert violations('models.dla', deferred, is_package=False) == [
        'models.dla:2 imports core.errors inside a function']
    assert violations('cli.convert', deferred, is_package=False) == []
    assert violations('zoo.classifier', 'from ..models.dla import DLA\n', is_package=False) == []
    # The package's own face and plain imports count too; a top-level try is not a function.
    assert violations('tasks.decode', 'from paddle_dla import create_model\n',
                      is_package=False) == ['tasks.decode:1 imports paddle_dla, a higher folder']
    assert violations('models.dla', 'import paddle_dla.zoo.factory\n', is_package=False) == [
        'models.dla:1 imports zoo.factory, a higher folder']
    guarded = 'try:\n    from ..core import machine\nexcept ImportError:\n    pass\n'
    assert violations('models.dla', guarded, is_package=False) == []
