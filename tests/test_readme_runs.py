"""The README's examples run as written, offline, on a fresh clone.

Every ```python block of README.md, and every ```bash block of its Quick start, is either
run here or preceded by a visible ``<!-- not run: REASON -->`` line saying why not (it needs
the network, your data or a file you bring). A block that runs does so as a user would: in an
empty folder, with this environment's commands first on ``PATH``, an empty
``PADDLE_DLA_HOME`` and every download sent to a dead proxy. Those runs take about a minute
on two cores and are in the full tier. The fast tier checks the same blocks without running
them: they parse, a block that runs reads no file it has not written and fetches no
published weights, and ``import paddle_dla`` comes before ``import paddle``; and it runs the
Quick start's imports, which must not show Paddle's "No ccache found" warning. It also holds
the README's list of what the ``test`` extra installs to requirements-test.txt.
"""
import ast
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
QUICK_START = 'Quick start'
NOT_RUN = re.compile(r'^<!--\s*not run:(.*?)-->$')
CCACHE_WARNING = 'No ccache found'
DEAD_PROXY = 'http://127.0.0.1:9'  # the discard port: any download fails at once


@dataclass
class Block:
    lang: str
    line: int                 # of the opening fence, 1-based
    section: str              # the '## ' heading above it
    code: str
    not_run: Optional[str]    # the reason given by a '<!-- not run: ... -->' line, or None

    def __str__(self):
        return f'README.md:{self.line} ({self.section}, {self.lang})'


def readme_blocks():
    lines = open(README, encoding='utf-8').read().splitlines()
    blocks, section, i = [], '', 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('## '):
            section = line[3:].strip()
        fence = re.match(r'^```(\w*)\s*$', line)
        if fence:
            end = i + 1
            while end < len(lines) and not lines[end].startswith('```'):
                end += 1
            assert end < len(lines), f'README.md:{i + 1}: unclosed code block'
            before = [text.strip() for text in lines[:i] if text.strip()]
            mark = NOT_RUN.match(before[-1]) if before else None
            blocks.append(Block(fence.group(1), i + 1, section, '\n'.join(lines[i + 1:end]) + '\n',
                                mark.group(1).strip() if mark else None))
            i = end
        i += 1
    return blocks


def python_blocks():
    return [b for b in readme_blocks() if b.lang == 'python']


def quick_start_bash_blocks():
    return [b for b in readme_blocks() if b.lang == 'bash' and b.section == QUICK_START]


def blocks_to_run():
    return [b for b in python_blocks() + quick_start_bash_blocks() if b.not_run is None]


# --- what a block reads and writes, line by line --------------------------------------------

FILE_NAME = re.compile(r"[\w./-]+\.(?:jpe?g|png|bmp|gif|webp|pdparams|pdiparams|pdmodel|pth|tar|"
                       r"safetensors|json|txt|csv)\b")
# An argument that names a file or folder a command reads, or one it writes.
READ_OPTIONS = {'--weights', '--exported', '--src', '--data-dir', '--class-names', '--resume'}
WRITE_OPTIONS = {'--out', '--out-dir', '--dst', '--results-file', '--output'}
SAVED = re.compile(r"save\(.*'([^']+)'\s*\)")          # paddle.save(obj, 'f'), image.save('f')
PUBLISHED = re.compile(r"pretrained\s*=\s*(True|'official'|'tricks')")


def _norm(path):
    return os.path.normpath(path.strip('\'"'))


def python_io(code):
    """[(line number, 'read' or 'write', path)] of a Python snippet, in order."""
    events = []
    for number, line in enumerate(code.splitlines(), 1):
        line = line.split('#')[0]
        written = SAVED.findall(line)
        events += [(number, 'write', _norm(w)) for w in written]
        events += [(number, 'read', _norm(r)) for r in FILE_NAME.findall(line)
                   if _norm(r) not in map(_norm, written)]
    return events


def bash_commands(code):
    """The commands of a bash snippet as argument lists (comments dropped)."""
    return [words for words in (shlex.split(line, comments=True) for line in code.splitlines())
            if words]


def python_c(words):
    """The code of a `python -c CODE` command, else None."""
    return words[words.index('-c') + 1] if words[0] == 'python' and '-c' in words[:-1] else None


def bash_io(code):
    events = []
    for number, words in enumerate(bash_commands(code), 1):
        if python_c(words) is not None:
            events += [(number, kind, path) for _, kind, path in python_io(python_c(words))]
            continue
        for k, word in enumerate(words):
            option = words[k - 1] if k else None
            if option in WRITE_OPTIONS:
                events.append((number, 'write', _norm(word)))
            elif option in READ_OPTIONS or FILE_NAME.fullmatch(word):
                events.append((number, 'read', _norm(word)))
    return events


def unwritten_reads(events):
    written, missing = set(), []
    for number, kind, path in events:
        if kind == 'write':
            written.add(path)
        elif not any(path == w or path.startswith(w + os.sep) for w in written):
            missing.append(f'line {number}: {path}')
    return missing


def network_uses(block):
    """What in a block fetches published weights."""
    if block.lang == 'python':
        return [line.strip() for line in block.code.splitlines()
                if PUBLISHED.search(line.split('#')[0])]
    found = []
    for words in bash_commands(block.code):
        if words[0] != 'paddle-dla':
            if PUBLISHED.search(python_c(words) or ''):
                found.append(shlex.join(words))
            continue
        job = words[1] if len(words) > 1 else ''
        published = job in ('predict', 'export', 'eval') and '--model' in words \
            and '--weights' not in words
        if published or (job == 'cache' and 'fetch' in words):
            found.append(shlex.join(words))
    return found


def python_snippets():
    """(where, code) of every Python snippet: the python blocks and each `python -c` of a
    Quick start bash block."""
    snippets = [(str(b), b.code) for b in python_blocks()]
    for block in quick_start_bash_blocks():
        for words in bash_commands(block.code):
            if python_c(words) is not None:
                snippets.append((f'{block}: {shlex.join(words)[:60]}...', python_c(words)))
    return snippets


# --- running a block as a user would ------------------------------------------------------

def run_as_user(argv, folder, timeout=900):
    """Run argv in ``folder/work`` as a user would: this environment's commands first on PATH,
    a fresh PADDLE_DLA_HOME, downloads sent to a dead proxy. Keeps what the test run sets in
    PYTHONPATH (the torch blocker of PADDLE_DLA_TESTS_WITHOUT_TORCH=1)."""
    work, home = folder / 'work', folder / 'home'
    work.mkdir()
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get('PATH', '')])
    env = dict(os.environ, PATH=path, PADDLE_DLA_HOME=str(home), PADDLE_DLA_MIRROR=DEAD_PROXY + '/',
               http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY,
               HTTPS_PROXY=DEAD_PROXY, no_proxy='', NO_PROXY='')
    env.pop('PYTHONWARNINGS', None)  # the warnings a user sees
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def tail(proc, lines=30):
    return '\n'.join((proc.stdout + proc.stderr).splitlines()[-lines:])


# --- the fast tier: the blocks without running them --------------------------------------------

def test_readme_blocks_parse():
    blocks = readme_blocks()
    assert [b for b in blocks if b.lang == 'python'] and quick_start_bash_blocks()
    for block in blocks:
        if block.lang == 'python':
            try:
                ast.parse(block.code)
            except SyntaxError as e:
                pytest.fail(f'{block}: {e}')
        elif block.lang == 'bash':
            check = subprocess.run(['bash', '-n'], input=block.code, capture_output=True, text=True)
            assert check.returncode == 0, f'{block}: {check.stderr}'


def test_quick_start_runs_and_the_rest_says_why_not():
    marked = [b for b in readme_blocks() if b.not_run is not None]
    for block in marked:
        assert block.not_run, f'{block}: "<!-- not run: REASON -->" needs a reason'
    quick = [b for b in blocks_to_run() if b.section == QUICK_START]
    assert {b.lang for b in quick} == {'bash', 'python'}, \
        'the Quick start must have a bash block and a Python block that run offline'
    for block in blocks_to_run():
        assert not network_uses(block), (
            f'{block} fetches published weights ({network_uses(block)}): move that to a block '
            f'marked <!-- not run: needs the network -->')


@pytest.mark.parametrize('block', blocks_to_run(), ids=str)
def test_blocks_that_run_read_only_files_they_write(block):
    events = python_io(block.code) if block.lang == 'python' else bash_io(block.code)
    missing = unwritten_reads(events)
    assert not missing, (f'{block} reads files that no earlier step of it writes: {missing}; '
                         f'write them first, or mark the block <!-- not run: REASON -->')


def test_snippets_import_paddle_dla_before_paddle():
    for where, code in python_snippets():
        order = []
        for node in ast.walk(ast.parse(code)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            order += [(node.lineno, node.col_offset, k, name.split('.')[0])
                      for k, name in enumerate(names)]
        tops = [name for *_, name in sorted(order) if name in ('paddle', 'paddle_dla')]
        if 'paddle' in tops:
            assert tops[0] == 'paddle_dla', \
                f'{where}: import paddle_dla before paddle (it hides Paddle\'s "{CCACHE_WARNING}")'


def test_readme_names_everything_the_test_extra_installs():
    """The README's sentence on the ``test`` extra names each package of requirements-test.txt
    (as `name`), and names no other package."""
    text = open(README, encoding='utf-8').read()
    sentence = re.search(r'`test` adds(.*?)\.(?:\s|$)', text, re.S)
    assert sentence, 'README lost its sentence "`test` adds ..."'
    named = set(re.findall(r'`([^`]+)`', sentence.group(1)))
    with open(os.path.join(REPO, 'requirements-test.txt'), encoding='utf-8') as f:
        required = {re.split(r'[\s<>=!~;\[]', line.split('#')[0].strip())[0]
                    for line in f if line.split('#')[0].strip()}
    assert required, 'requirements-test.txt lists nothing'
    missing, extra = required - named, named - required - {'requirements-test.txt'}
    assert not missing, f'the README does not say the test extra installs {sorted(missing)}'
    assert not extra, \
        f'the README says the test extra installs {sorted(extra)}: requirements-test.txt does not'


def test_quick_start_imports_show_no_ccache_warning(tmp_path):
    """The fast half of the Python block's run below: its imports, in a fresh Python."""
    block, = [b for b in python_blocks() if b.section == QUICK_START]
    imports = [ast.unparse(node) for node in ast.parse(block.code).body
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports
    proc, _ = run_as_user([sys.executable, '-c', '\n'.join(imports)], tmp_path)
    assert proc.returncode == 0, tail(proc)
    assert CCACHE_WARNING not in proc.stdout + proc.stderr, \
        f'{block}: its imports show Paddle\'s "{CCACHE_WARNING}" warning:\n{tail(proc)}'


# --- the full tier: the blocks run, as a user runs them ---------------------------------------

@pytest.mark.full  # exports and runs two models: 45-90 s on two cores (40 s of CPU)
@pytest.mark.parametrize('block', [b for b in blocks_to_run() if b.lang == 'bash'], ids=str)
def test_quick_start_bash_block_runs_offline(block, tmp_path):
    script = tmp_path / 'quick_start.sh'
    script.write_text(block.code)
    proc, seconds = run_as_user(['bash', '-e', str(script)], tmp_path)
    assert proc.returncode == 0, f'{block} failed after {seconds:.0f} s:\n{tail(proc)}'
    assert CCACHE_WARNING not in proc.stdout + proc.stderr, tail(proc)


@pytest.mark.full  # builds five models: about 9 s
@pytest.mark.parametrize('block', [b for b in blocks_to_run() if b.lang == 'python'], ids=str)
def test_python_block_runs_offline(block, tmp_path):
    script = tmp_path / 'snippet.py'
    script.write_text(block.code)
    proc, seconds = run_as_user([sys.executable, str(script)], tmp_path)
    assert proc.returncode == 0, f'{block} failed after {seconds:.0f} s:\n{tail(proc)}'
    assert CCACHE_WARNING not in proc.stdout + proc.stderr, \
        f'{block} shows Paddle\'s "{CCACHE_WARNING}" warning:\n{tail(proc)}'
