"""The suite's tool processes (tests/tool_process.py): every tool still
starts in a fresh interpreter, where nothing was imported for it; and a
forked tool ends as the interpreter ends a script."""
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import REPO
from tool_process import run_tool

TOOLS = sorted(path.name for path in (REPO / 'tools').glob('*.py'))
# Tools that other tests of `make test` start in fresh interpreters: the
# demo pipeline and the README's short run (tests/pipeline), the grid's
# tests, the gpu-check's steps, segment.py's SIGTERM test, the wheelhouse
# tests.
STARTED_FRESH_ELSEWHERE = {
    'benchmark_inference.py', 'convert_data.py', 'crf.py', 'figures.py',
    'gpu_check.py', 'grid.py', 'report.py', 'segment.py', 'test.py',
    'train.py', 'wheelhouse.py'}


@pytest.mark.slow
def test_every_tool_starts_in_a_fresh_interpreter():
    """`python tools/X.py --help`, two at a time, for each tool that no
    other test starts in a fresh interpreter: its imports and arguments
    without the tool server's preloaded modules (which would hide, say, a
    submodule used but not imported)."""
    assert STARTED_FRESH_ELSEWHERE < set(TOOLS), TOOLS
    names = sorted(set(TOOLS) - STARTED_FRESH_ELSEWHERE)

    def start(name):
        return subprocess.run(
            [sys.executable, f'tools/{name}', '--help'], cwd=REPO,
            capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for name, result in zip(names, pool.map(start, names)):
            assert result.stdout.startswith('usage: '), (
                name, result.stderr[-3000:])


def test_a_forked_tool_ends_as_a_script_does(tmp_path):
    """Exit status, output, an uncaught exception, Ctrl-C and exit
    handlers, through run_tool's fork as through `python`."""
    script = tmp_path / 'ending.py'  # run_tool takes a path too
    script.write_text(
        'import atexit, sys\n'
        'atexit.register(lambda: print("exit handler ran"))\n'
        'kind = sys.argv[1]\n'
        'print("argv", sys.argv[1:], "path0", sys.path[0])\n'
        'if kind == "status": sys.exit(3)\n'
        'if kind == "message": sys.exit("error: told to stop")\n'
        'if kind == "raise": raise ValueError("broken")\n'
        'if kind == "interrupt": raise KeyboardInterrupt\n')
    for kind in ('status', 'message', 'raise', 'interrupt', 'none'):
        forked = run_tool(script, kind, cwd=tmp_path)
        fresh = subprocess.run([sys.executable, str(script), kind],
                               cwd=tmp_path, capture_output=True, text=True,
                               timeout=60)
        assert forked.returncode == fresh.returncode, (kind, forked.stderr)
        assert forked.stdout == fresh.stdout, kind
        assert forked.stderr.splitlines()[-1:] == \
            fresh.stderr.splitlines()[-1:], kind
