"""The project's tools run as a user runs them, each call a process of its
own (its own exit status, output, signals, threads and clean-up), forked
from a server that imported torch, MMSegmentation and the project once per
test worker: a fresh `python tools/X.py` spends about 2.7 s of this 2-core
machine on those imports before the tool's first line, and the suite
starts tools about a hundred times.

The child runs the tool's file from its first line, as `python tools/X.py
ARGS` would: ``sys.argv``, ``sys.path`` (the tool's folder, then a fresh
interpreter's path in the given environment), the environment, the
working directory and the standard streams are that command's; an
uncaught exception, ``SystemExit``, threads and exit handlers end it as
the interpreter ends a script. What happens before a tool's imports
finish, and process trees (the DVC pipeline, torchrun, the gpu-check's
steps), are tested with real interpreters.

This file is also the server (`python tests/tool_process.py`): it reads
one JSON request per line, forks, answers the child's pid, then its exit
status (``subprocess``'s convention: minus the signal that ended it). One
server runs per environment of what an interpreter reads as it starts
and imports (``PYTHON*``, thread counts, visible GPUs)."""
import atexit
import json
import os
import queue
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
# What the tools import, imported once by the server.
PRELOAD = ['torch', 'cv2', 'mmcv', 'mmengine.runner', 'mmseg.apis',
           'mmseg.models', 'mmseg.datasets', 'mmseg.evaluation', 'tqdm',
           'pandas', 'fashionseg.runner.training', 'fashionseg.runner.testing',
           'fashionseg.inference.segmenter', 'fashionseg.inference.photos',
           'fashionseg.crf.search', 'custom_datasets.convert']


# The server and its children.

def _exit_status(code) -> int:
    """The interpreter's exit status for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xff
    print(code, file=sys.stderr)
    return 1


def _run_script(request: dict, path: list) -> None:
    """In the forked child: the tool, then the interpreter's ending."""
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    for fd, name in ((0, os.devnull), (1, request['stdout']),
                     (2, request['stderr'])):
        target = os.open(name, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = open(1, 'w', closefd=False)
    sys.stderr = sys.__stderr__ = open(2, 'w', buffering=1, closefd=False,
                                       errors='backslashreplace')
    script = request['script']
    sys.argv = [script] + request['args']
    sys.path[:] = [str(Path(script).parent)] + path
    status = 0
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as stop:
        status = _exit_status(stop.code)
    except BaseException:
        traceback.print_exc()
        status = 1
    threading._shutdown()  # the interpreter's join of non-daemon threads
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve() -> None:
    import importlib
    answer = sys.stdout
    fresh_path = sys.path[1:]  # a fresh interpreter's, less tests/
    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _run_script(request, fresh_path)
            finally:
                os._exit(1)
        answer.write(json.dumps({'pid': pid}) + '\n')
        answer.flush()
        _, status = os.waitpid(pid, 0)
        answer.write(json.dumps(
            {'returncode': os.waitstatus_to_exitcode(status)}) + '\n')
        answer.flush()


# The tests' side.

# Read by an interpreter as it starts or imports torch: a server per value.
STARTUP_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
               'CUDA_VISIBLE_DEVICES', 'LD_PRELOAD', 'LD_LIBRARY_PATH')


class _Server:
    def __init__(self, env: dict):
        self.process = subprocess.Popen(
            [sys.executable, __file__], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.answers.put(json.loads(line))
        self.answers.put(None)  # the server ended

    def answer(self, timeout: Optional[float] = None) -> dict:
        answer = self.answers.get(timeout=timeout)
        if answer is None:
            raise RuntimeError('the tool server ended: see its output '
                               'above')
        return answer


_servers: dict = {}
_lock = threading.Lock()


def _server_for(env: dict) -> _Server:
    key = tuple(sorted((name, value) for name, value in env.items()
                       if name.startswith('PYTHON') or name in STARTUP_ENV))
    server = _servers.get(key)
    if server is None or server.process.poll() is not None:
        server = _servers[key] = _Server(env)
    return server


def run_tool(tool: str, *args, cwd=REPO, env: Optional[dict] = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """``python tools/TOOL ARGS`` in ``cwd`` (``env``: the environment,
    this process's by default), its output captured, as
    ``subprocess.run(..., capture_output=True, text=True)`` returns it."""
    env = dict(os.environ if env is None else env)
    script = str(REPO / 'tools' / tool)
    command = [sys.executable, script] + [str(arg) for arg in args]
    with _lock, tempfile.TemporaryDirectory() as folder:
        server = _server_for(env)
        out, err = Path(folder) / 'stdout', Path(folder) / 'stderr'
        out.touch()
        err.touch()
        server.process.stdin.write(json.dumps(dict(
            script=script, args=command[2:], cwd=str(cwd), env=env,
            stdout=str(out), stderr=str(err))) + '\n')
        server.process.stdin.flush()
        pid = server.answer(timeout=120)['pid']
        try:
            returncode = server.answer(timeout=timeout)['returncode']
        except queue.Empty:
            os.kill(pid, signal.SIGKILL)
            server.answer()
            raise subprocess.TimeoutExpired(command, timeout,
                                            out.read_text(), err.read_text())
        return subprocess.CompletedProcess(
            command, returncode, out.read_text(errors='backslashreplace'),
            err.read_text(errors='backslashreplace'))


if __name__ == '__main__':
    serve()
