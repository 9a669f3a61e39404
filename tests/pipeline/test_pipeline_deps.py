"""The pipeline's dependencies are true: every stage of dvc.yaml declares
the project code its tool runs (followed through its imports, and through
the configs' ``custom_imports`` for the stages that build a model), its
config and the config bases, so that a code change reruns exactly the
stages that run that code."""
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from project_imports import project_files

STAGES = yaml.safe_load((REPO / 'dvc.yaml').read_text())['stages']
# What a config registers on import (mmseg_configs/_base_/default_runtime.py).
REGISTRY = REPO / 'fashionseg' / 'mmseg_modules.py'


def _tool(stage: dict) -> Path:
    match = re.search(r'python (tools/\w+\.py)', stage['cmd'])
    assert match, stage['cmd']
    return REPO / match.group(1)


def _builds_a_model(stage: dict) -> bool:
    return re.search(r'configs\}/\S+\.py', stage['cmd']) is not None


def _covered(path: Path, deps) -> bool:
    relative = path.relative_to(REPO).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip('/') + '/')
               for dep in deps)


@pytest.mark.parametrize('name', sorted(STAGES))
def test_each_stage_declares_the_code_it_runs(name):
    stage = STAGES[name]
    deps = [dep for dep in stage['deps'] if '${' not in dep]
    tool = _tool(stage)
    needed = {tool} | project_files(REPO, tool)
    if _builds_a_model(stage):
        needed |= {REGISTRY} | project_files(REPO, REGISTRY)
    missing = sorted(p.relative_to(REPO).as_posix() for p in needed
                     if not _covered(p, deps))
    assert not missing, f'{name}: deps lack {missing}'


@pytest.mark.parametrize('name', sorted(n for n, s in STAGES.items()
                                        if _builds_a_model(s)))
def test_stages_that_build_a_model_declare_its_config_and_bases(name):
    stage = STAGES[name]
    config = re.search(r'(\$\{[\w.]*configs\}/\S+\.py)', stage['cmd'])[1]
    assert config in stage['deps'], name
    assert 'mmseg_configs/_base_' in stage['deps'], name
    # A demo config inherits its paper config.
    paper_config = 'mmseg_configs/' + config.split('}/', 1)[1]
    assert paper_config in stage['deps'], name


def test_the_report_declares_the_paper_figures_it_reads():
    for name in ('report', 'demo-report'):
        assert 'fashionseg/report/paper_figures.yaml' in \
            STAGES[name]['deps']


def test_the_import_walk_sees_through_packages(tmp_path):
    """The helper itself: ``from pkg import module`` and relative imports
    are followed."""
    (tmp_path / 'fashionseg' / 'sub').mkdir(parents=True)
    (tmp_path / 'fashionseg' / '__init__.py').write_text('')
    (tmp_path / 'fashionseg' / 'sub' / '__init__.py').write_text(
        'from .leaf import x\n')
    (tmp_path / 'fashionseg' / 'sub' / 'leaf.py').write_text('x = 1\n')
    (tmp_path / 'fashionseg' / 'other.py').write_text('')
    tool = tmp_path / 'tool.py'
    tool.write_text('import os\nfrom fashionseg import sub, other\n')
    found = {p.relative_to(tmp_path).as_posix()
             for p in project_files(tmp_path, tool)}
    assert found == {'fashionseg/__init__.py', 'fashionseg/sub/__init__.py',
                     'fashionseg/sub/leaf.py', 'fashionseg/other.py'}


def test_the_committed_lock_matches_the_committed_files():
    """dvc.lock records, for each stage it holds, the md5 of every file
    the stage read and wrote; for the files the repository tracks, those
    are the files' own, so that a fresh clone's `dvc status` reports only
    what really differs. (After changing one: `dvc commit -f STAGE`.)"""
    import hashlib
    import subprocess
    lock = yaml.safe_load((REPO / 'dvc.lock').read_text())
    tracked = set(subprocess.run(
        ['git', 'ls-files'], cwd=REPO, capture_output=True, text=True,
        check=True).stdout.split())
    checked = 0
    for name, stage in lock['stages'].items():
        assert stage['cmd'] == STAGES[name]['cmd'].replace(
            '${results}', 'results'), name
        for entry in stage.get('deps', []) + stage.get('outs', []):
            if entry['path'] not in tracked or 'md5' not in entry:
                continue
            data = (REPO / entry['path']).read_bytes()
            assert hashlib.md5(data).hexdigest() == entry['md5'], (
                f'dvc.lock: {name} records another {entry["path"]}; run '
                f'`.venv/bin/dvc commit -f {name}`')
            checked += 1
    assert checked
