"""tools/mmcv-cxx, the compiler of mmcv's build: mmcv's common header
precompiled once, used by every file that includes it first, and the
compiler unchanged for everything else."""
import os
import shutil
import subprocess

import pytest
from conftest import REPO

WRAPPER = REPO / 'tools' / 'mmcv-cxx'
HEADER = 'pytorch_cpp_helper.hpp'

pytestmark = pytest.mark.skipif(
    shutil.which('g++') is None or shutil.which('flock') is None,
    reason='needs g++ and flock')


def _sources(root):
    """A build laid out as mmcv's: the header in common/, sources that
    include it first in pytorch/."""
    common, sources = root / 'common', root / 'pytorch'
    common.mkdir()
    sources.mkdir()
    (common / HEADER).write_text(
        '#ifndef HELPER\n#define HELPER\n#include <map>\n#include <string>\n'
        '#include <vector>\ninline int helper() { return 41; }\n#endif\n')
    for name in ('one', 'two'):
        (sources / f'{name}.cpp').write_text(
            f'#include "{HEADER}"\nint {name}() {{ return helper() + 1; }}\n')
    return common, sources


def _compile(root, source, env, *extra):
    """A compile as ninja runs it under torch's cpp_extension."""
    obj = root / (source.stem + '.o')
    return subprocess.run(
        [str(WRAPPER), '-MMD', '-MF', f'{obj}.d', '-fPIC', '-O2', '-g0',
         f'-I{root / "common"}', *extra, '-c', str(source), '-o', str(obj),
         '-std=c++17'], env=env, capture_output=True, text=True, cwd=root)


def test_the_header_is_precompiled_once_and_used_by_every_file(tmp_path):
    common, sources = _sources(tmp_path)
    pch = tmp_path / 'pch'
    pch.mkdir()
    env = dict(os.environ, MMCV_REAL_CXX='g++', MMCV_PCH_DIR=str(pch))
    used = []
    for source in sorted(sources.glob('*.cpp')):
        # -H lists the headers read; "!" marks a valid precompiled one.
        result = _compile(tmp_path, source, env, '-H')
        assert result.returncode == 0, result.stderr
        assert (tmp_path / (source.stem + '.o')).stat().st_size > 0
        used.append(f'! {pch / HEADER}.gch' in result.stderr)
    assert used == [True, True]
    assert sorted(p.name for p in pch.iterdir() if p.suffix == '.gch') == \
        [HEADER + '.gch']


def test_other_invocations_and_builds_without_a_folder_are_the_compiler(
        tmp_path):
    _, sources = _sources(tmp_path)
    env = dict(os.environ, MMCV_REAL_CXX='g++')
    env.pop('MMCV_PCH_DIR', None)
    result = _compile(tmp_path, sources / 'one.cpp', env, '-H')
    assert result.returncode == 0, result.stderr
    assert '.gch' not in result.stderr
    version = subprocess.run([str(WRAPPER), '--version'], capture_output=True,
                             text=True, env=dict(env, MMCV_PCH_DIR=str(
                                 tmp_path)))
    assert version.returncode == 0
    assert version.stdout == subprocess.run(
        ['g++', '--version'], capture_output=True, text=True).stdout
    assert not list(tmp_path.glob('*.gch'))
    # Named as its own compiler (CXX set to it twice), it stops at once.
    looping = subprocess.run([str(WRAPPER), '--version'], capture_output=True,
                             text=True, timeout=30,
                             env=dict(env, MMCV_REAL_CXX=str(WRAPPER)))
    assert looping.returncode == 1
    assert 'MMCV_REAL_CXX names this wrapper' in looping.stderr


def test_a_header_that_does_not_compile_leaves_the_build_to_report_it(
        tmp_path):
    common, sources = _sources(tmp_path)
    (common / HEADER).write_text('this is not C++;\n')
    pch = tmp_path / 'pch'
    pch.mkdir()
    env = dict(os.environ, MMCV_REAL_CXX='g++', MMCV_PCH_DIR=str(pch))
    result = _compile(tmp_path, sources / 'one.cpp', env)
    assert 'not precompiled (the build goes on without it)' in result.stderr
    # The file's own compile then reports the header's error, as without
    # the wrapper.
    assert result.returncode != 0
    assert f'{HEADER}:1' in result.stderr
    assert not list(pch.glob('*.gch'))
