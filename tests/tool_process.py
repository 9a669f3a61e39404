"""The project's tools run as a user runs them, each call a process of its
own (its own exit status, output, signals, threads and clean-up), forked
from a server that imported torch, MMSegmentation and the project once: a
fresh `python tools/X.py` spends about 2.7 s of this 2-core machine on
those imports before the tool's first line, and the suite starts tools
about a hundred times.

The child runs the tool's file from its first line, as `python tools/X.py
ARGS` would: ``sys.argv``, ``sys.path`` (the tool's folder, then a fresh
interpreter's path in the given environment), the environment, the
working directory and the standard streams are that command's, and the
random generators are seeded afresh; an uncaught exception,
``SystemExit``, Ctrl-C, threads and exit handlers end it as the
interpreter ends a script. What differs is what the imports did before:
``test_every_tool_starts_in_a_fresh_interpreter``
(tests/utils/test_tool_process.py) starts each tool in a real interpreter,
as do the tests of the DVC pipeline, torchrun and the gpu-check's steps.
On a CUDA or ROCm build of torch, whose GPU state a forked process cannot
use, each call is a fresh interpreter.

This file is also the server (`python tests/tool_process.py`): it reads
one JSON request per line, forks, answers the child's pid, then its exit
status (``subprocess``'s convention: minus the signal that ended it),
each answer with the request's id. One server runs per value of what an
interpreter reads as it starts and imports torch (``PYTHON*``, thread
counts, visible GPUs, ``LD_*``), and ends with the tests' process."""
import atexit
import gc
import itertools
import json
import os
import queue
import random
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
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
    unbuffered = bool(os.environ.get('PYTHONUNBUFFERED'))
    sys.stdin = sys.__stdin__ = open(0, closefd=False)
    sys.stdout = sys.__stdout__ = open(
        1, 'w', closefd=False, buffering=1 if unbuffered else -1)
    sys.stderr = sys.__stderr__ = open(2, 'w', buffering=1, closefd=False,
                                       errors='backslashreplace')
    # A fresh interpreter seeds these from the system at import.
    random.seed()
    import numpy
    numpy.random.seed()
    script = request['script']
    sys.argv = [script] + request['args']
    sys.path[:] = [str(Path(script).parent)] + path
    status, interrupted = 0, False
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as stop:
        status = _exit_status(stop.code)
    except BaseException as error:
        sys.excepthook(type(error), error, error.__traceback__)
        status, interrupted = 1, isinstance(error, KeyboardInterrupt)
    threading._shutdown()  # the interpreter's join of non-daemon threads
    atexit._run_exitfuncs()
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted:  # as the interpreter ends on an uncaught Ctrl-C
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


def serve() -> None:
    import importlib

    # Answers go to the tests on a copy of stdout; what the imports below
    # print goes to stderr.
    answers = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)

    def answer(**fields):
        answers.write(json.dumps(fields) + '\n')
        answers.flush()

    fresh_path = sys.path[1:]  # a fresh interpreter's, less tests/
    sys.path[:] = fresh_path
    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            answers.close()
            try:
                _run_script(request, fresh_path)
            finally:
                os._exit(1)
        answer(id=request['id'], pid=pid)
        _, status = os.waitpid(pid, 0)
        answer(id=request['id'],
               returncode=os.waitstatus_to_exitcode(status))


# The tests' side.

# Read by an interpreter as it starts or imports torch: a server per value.
STARTUP_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
               'CUDA_VISIBLE_DEVICES', 'HIP_VISIBLE_DEVICES')


class _Server:
    def __init__(self, env: dict):
        self.process = subprocess.Popen(
            [sys.executable, __file__], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for line in self.process.stdout:
                self.answers.put(json.loads(line))
        finally:
            self.answers.put(None)  # the server ended

    def answer(self, request: int, timeout: float) -> dict:
        answer = self.answers.get(timeout=timeout)
        if answer is None:
            raise RuntimeError('the tool server ended: see its output '
                               'above')
        assert answer['id'] == request, (answer, request)
        return answer

    def stop(self):
        self.process.kill()
        self.process.wait()


_servers: dict = {}
_lock = threading.Lock()
_requests = itertools.count()


@atexit.register
def _stop_servers():
    for server in _servers.values():
        server.stop()


def _server_for(env: dict) -> _Server:
    key = tuple(sorted(
        (name, value) for name, value in env.items()
        if name.startswith(('PYTHON', 'LD_')) or name in STARTUP_ENV))
    server = _servers.get(key)
    if server is None or server.process.poll() is not None:
        server = _servers[key] = _Server(env)
    return server


def _forks_safely() -> bool:
    import torch
    return not (torch.version.cuda or torch.version.hip)


def run_tool(tool: str, *args, cwd=REPO, env: Optional[dict] = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """``python tools/TOOL ARGS`` in ``cwd`` (``env``: the environment,
    this process's by default; ``tool`` may be a script's path), its
    output captured, as ``subprocess.run(..., capture_output=True,
    text=True)`` returns it."""
    env = dict(os.environ if env is None else env)
    script = str(REPO / 'tools' / tool)
    command = [sys.executable, script] + [str(arg) for arg in args]
    if not _forks_safely():
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=timeout)
    with _lock, tempfile.TemporaryDirectory() as folder:
        server = _server_for(env)
        out, err = Path(folder) / 'stdout', Path(folder) / 'stderr'
        out.touch()
        err.touch()
        request = next(_requests)
        pid = None
        try:
            server.process.stdin.write(json.dumps(dict(
                id=request, script=script, args=command[2:], cwd=str(cwd),
                env=env, stdout=str(out), stderr=str(err))) + '\n')
            server.process.stdin.flush()
            pid = server.answer(request, timeout=120)['pid']
            returncode = server.answer(request, timeout)['returncode']
        except BaseException as error:
            # A server whose answers may now be out of step is not reused.
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            server.stop()
            if isinstance(error, queue.Empty):
                raise subprocess.TimeoutExpired(
                    command, timeout, out.read_text(),
                    err.read_text()) from None
            raise
        return subprocess.CompletedProcess(
            command, returncode, out.read_text(errors='backslashreplace'),
            err.read_text(errors='backslashreplace'))


if __name__ == '__main__':
    serve()
