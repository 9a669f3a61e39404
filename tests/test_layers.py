"""The package's import structure: no module imports itself back through
others, and every import runs down the layers a reader of the paper meets
(the errors and helpers at the bottom; the model, metrics and CRF; the
checkpoints, the inference engine and the runner built on them; the
benchmarks, report and gpu-check on top; the datasets as MMSegmentation
plugins above the library they use)."""
from conftest import REPO
from project_imports import import_graph

# Lowest first; a module may import its own layer and the ones below.
LAYERS = [
    ('fashionseg', 'fashionseg.errors', 'fashionseg.utils',
     'fashionseg.palette', 'fashionseg.dataset_folder'),
    ('fashionseg.evaluation', 'fashionseg.models', 'fashionseg.config_checks'),
    ('fashionseg.crf',),
    ('fashionseg.checkpoints',),
    ('fashionseg.inference',),
    ('fashionseg.runner',),
    ('fashionseg.mmseg_modules',),
    ('fashionseg.benchmarks', 'fashionseg.report'),
    ('fashionseg.gpu_check',),
    ('custom_datasets',),
]
GRAPH = import_graph(REPO)


def _layer(module: str) -> int:
    """The layer of the longest prefix of ``module`` that LAYERS names."""
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + '.'):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    assert best is not None, f'{module} is in no layer of {__file__}'
    return best[0]


def test_every_module_has_a_layer():
    for module in GRAPH:
        _layer(module)


def test_no_import_runs_up_a_layer():
    upward = sorted(
        f'{source} ({_layer(source)}) imports {target} ({_layer(target)})'
        for source, targets in GRAPH.items() for target in targets
        if _layer(target) > _layer(source))
    assert not upward, '\n'.join(upward)


def test_the_library_never_imports_the_dataset_plugins():
    back = sorted(f'{source} imports {target}'
                  for source, targets in GRAPH.items()
                  if source.startswith('fashionseg')
                  for target in targets if target.startswith('custom_'))
    assert not back, '\n'.join(back)


def _cycles(graph: dict) -> list:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle():
    assert _cycles(GRAPH) == []


def test_the_checks_catch_a_circle_and_an_upward_import():
    """The helpers themselves, on a made-up graph."""
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [
        ['a', 'b', 'c']]
    assert _layer('fashionseg.crf.refine') < _layer('fashionseg.report.tables')
    assert _layer('fashionseg.utils.cli') < \
        _layer('fashionseg.inference.settings')


def test_library_code_raises_and_never_exits():
    """Only the tools end the process (fashionseg.utils.cli.run_tool turns a
    harness error into one line and exit status 2)."""
    exits = []
    for package in ('fashionseg', 'custom_datasets'):
        for path in sorted((REPO / package).rglob('*.py')):
            if path == REPO / 'fashionseg' / 'utils' / 'cli.py':
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if 'SystemExit' in line or 'sys.exit(' in line:
                    exits.append(f'{path.relative_to(REPO)}:{number}: {line}')
    assert not exits, '\n'.join(exits)
