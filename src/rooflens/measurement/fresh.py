"""Run functions each in a fresh process: a child forked from a server that imported torch and ran nothing.

Why: a process that has run many different networks runs memory-bound operators slower than a fresh
one. Its heap keeps the holes of every earlier network (all the more so when glibc is told to keep freed
memory, as ``--keep-memory`` does), so a new output tensor is often placed in a block no recent operator
touched, not in the one just freed and still in cache. On the 2-vCPU validation VM (one thread, memory
kept), six networks profiled at the start of a process took 26.2 ms of batch norms, 4.9 ms of
concatenations and 25.9 ms of depthwise convolutions; after 50, 100 and 150 generated networks in the
same process 28.9-32.9, 5.7-7.3 and 27.2-30.1 ms; in a new process 24.9, 4.9 and 24.8 ms. The dense 3x3
convolutions stayed at 43-47 ms (docs/prediction.md). Samples taken so teach a latency predictor a slower
machine than the one a model runs on in its own process.

:class:`FreshProcesses` starts one server (a new interpreter that imports the ``preload`` modules and
runs nothing else) and forks it for every call, so each call starts from the server's small, clean heap
with torch already imported (8.5 ms for an empty call on that VM, against 3.2 s to start an interpreter
that imports torch and torchvision). The server is a plain subprocess: it runs none of the caller's
script and touches nothing in the caller's process (``multiprocessing``'s settings, its forkserver).
Forking needs POSIX; :func:`available` says whether this platform has it (callers run in their own
process where not).
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from rooflens.errors import ModelError

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

T = TypeVar("T")


def available() -> bool:
    """Whether :class:`FreshProcesses` works here: Linux, where a process can fork (torch supports forking a
    process that has imported it but not yet run a parallel region or initialised CUDA)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class FreshProcesses:
    """Calls ``fn(*args)`` in a new child of a clean server process and returns what it returns.

    ``fn`` and its arguments and result must pickle, and ``fn`` must be importable by its module's name
    (not defined in ``__main__``: the server runs none of the caller's script, so a script needs no
    ``if __name__ == "__main__"`` guard); the server's ``PYTHONPATH`` is the caller's ``sys.path``. An exception in the
    child is raised again here as a :class:`~rooflens.errors.ModelError` naming it; a child that dies (a
    crash, a signal) raises one that says how it ended. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, preload: Sequence[str] = ("torch",)) -> None:
        if not available():
            raise ModelError(f"fresh processes fork a server that imported torch: Linux only, this is {sys.platform}")
        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        code = "import sys; from rooflens.measurement.fresh import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])"
        path = os.pathsep.join(p for p in sys.path if p)  # the caller's: the server imports what it does
        self._server = subprocess.Popen([sys.executable, "-c", code, str(jobs_read), str(results_write), *preload],
                                        pass_fds=(jobs_read, results_write), stdin=subprocess.DEVNULL,
                                        env={**os.environ, "PYTHONPATH": path},
                                        start_new_session=True)  # Ctrl-C reaches the caller, which shuts it down
        os.close(jobs_read)
        os.close(results_write)
        self._jobs = Connection(jobs_write, readable=False)
        self._results = Connection(results_read, writable=False)

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if getattr(fn, "__module__", None) == "__main__":
            raise ModelError(f"{getattr(fn, '__qualname__', fn)} is defined in __main__: a fresh process imports what "
                             "it runs by module name, so define it in an importable module")
        try:
            self._jobs.send((fn, args))
            ok, value = pickle.loads(self._results.recv_bytes())
        except (EOFError, OSError) as e:
            raise ModelError(f"the fresh-process server stopped ({type(e).__name__}: {e})") from e
        if not ok:
            raise ModelError(f"{getattr(fn, '__name__', fn)} failed in a fresh process: {value}")
        result: T = value
        return result

    def close(self) -> None:
        if self._server.poll() is None:
            try:
                self._jobs.send(None)
            except OSError:
                pass
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:  # busy with a child: both go (the child is in its process group)
                os.killpg(self._server.pid, signal.SIGKILL)
                self._server.wait()
        self._jobs.close()
        self._results.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _serve(jobs_fd: int, results_fd: int, preload: Sequence[str]) -> None:
    """The server: import the ``preload`` modules, then for every (fn, args) received fork a child that runs
    it and writes (ok, result or the error's text), pickled, back through a pipe, passed on as it is (the
    caller, which has the result's modules, unpickles it); ``None`` ends it."""
    jobs, results = Connection(jobs_fd, writable=False), Connection(results_fd, readable=False)
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional module (torchvision): the child imports it if it needs it, or fails saying so
    while True:
        try:
            raw = jobs.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            job = pickle.loads(raw)
        except Exception as e:  # noqa: BLE001 -- a job this server cannot import: said, and the server goes on
            results.send_bytes(pickle.dumps((False, f"the job does not unpickle here ({type(e).__name__}: {e})")))
            continue
        if job is None:
            return
        fn, args = job
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, write the outcome, leave without running the server's clean-up
            try:
                os.close(read)
                jobs.close()
                results.close()
                try:
                    out: tuple[bool, Any] = (True, fn(*args))
                except BaseException as e:  # noqa: BLE001 -- every failure goes back to the caller as text
                    out = (False, _failure(e))
                try:
                    data = pickle.dumps(out)
                except Exception as e:  # noqa: BLE001
                    data = pickle.dumps((False, f"its result does not pickle ({type(e).__name__}: {e})"))
                sys.stdout.flush()
                sys.stderr.flush()
                with os.fdopen(write, "wb") as f:
                    f.write(data)
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data):
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
            data = pickle.dumps((False, f"the process died ({how}) before it returned"))
        try:
            results.send_bytes(data)  # unpickled by the caller, which has the result's modules
        except OSError:  # the caller is gone
            return


def _failure(error: BaseException) -> str:
    """``error`` as the caller reads it: "Kind: text (at FILE:LINE in FUNCTION)", the innermost frame below the
    server's own call (for a failing operator a frame inside torch, which names the operator); no location
    when the call itself raised (a builtin, a wrong number of arguments)."""
    kind = type(error).__name__
    try:
        text = str(error)
        tb = error.__traceback__.tb_next if error.__traceback__ is not None else None  # past _serve's frame
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno} in {tb.tb_frame.f_code.co_name})" if tb else ""
    except Exception:  # noqa: BLE001 -- an exception that cannot say itself still goes back, by its kind
        return kind
    return f"{kind}: {text}{where}" if text else f"{kind}{where}"
