"""The project modules a tool runs: its imports within the project,
followed transitively (helper of the pipeline dependency test)."""
import ast
from pathlib import Path
from typing import Set

PACKAGES = ('fashionseg', 'custom_datasets')


def module_file(root: Path, name: str):
    """The file of module ``name`` under ``root``, or None."""
    path = root.joinpath(*name.split('.'))
    if path.with_suffix('.py').is_file():
        return path.with_suffix('.py')
    if (path / '__init__.py').is_file():
        return path / '__init__.py'
    return None


def _imported_names(path: Path, root: Path) -> Set[str]:
    tree = ast.parse(path.read_text(), str(path))
    # The package a relative import starts from.
    package = '.'.join(path.relative_to(root).parent.parts)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parts = parts[:len(parts) - node.level + 1]
                base = '.'.join(parts + ([base] if base else []))
            names.add(base)
            # ``from package import module``
            names.update(f'{base}.{alias.name}' for alias in node.names)
    return names


def project_files(root: Path, entry: Path) -> Set[Path]:
    """Every project file ``entry`` imports, directly or not, with the
    ``__init__.py`` of each package on the way."""
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path, root):
            if name.split('.')[0] not in PACKAGES:
                continue
            parts = name.split('.')
            for i in range(1, len(parts) + 1):
                found = module_file(root, '.'.join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen - {entry}


def module_name(root: Path, path: Path) -> str:
    """``fashionseg/crf/refine.py`` -> ``fashionseg.crf.refine``
    (a package's ``__init__.py`` -> the package)."""
    parts = list(path.relative_to(root).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def import_graph(root: Path) -> dict:
    """Module -> the project modules it imports (anywhere in its file, a
    function's body too), as Python loads them: the module itself and
    the packages on its way that the importer is not already inside."""
    graph = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob('*.py')):
            source = module_name(root, path)
            inside = {'.'.join(source.split('.')[:i])
                      for i in range(1, source.count('.') + 2)}
            targets = set()
            for name in _imported_names(path, root):
                if name.split('.')[0] not in PACKAGES:
                    continue
                parts = name.split('.')
                for i in range(1, len(parts) + 1):
                    prefix = '.'.join(parts[:i])
                    if prefix not in inside and \
                            module_file(root, prefix) is not None:
                        targets.add(prefix)
            graph[source] = targets - {source}
    return graph
