"""Run functions each in a fresh process: a child forked from a server that imported torch and ran nothing.

Why: a process that has run many different networks runs memory-bound operators slower than a fresh
one. Its heap keeps the holes of every earlier network (all the more so when glibc is told to keep freed
memory, as ``--keep-memory`` does), so a new output tensor is often placed in a block no recent operator
touched, not in the one just freed and still in cache. On the 2-vCPU validation VM (one thread, memory
kept), six networks profiled in a fresh process and again in the same process after 150 generated
networks took 24.9-26.2 ms against 28.9-32.9 ms of batch norms, 4.9 against 5.7-7.3 ms of
concatenations and 25-26 against 27-30 ms of depthwise convolutions, while the dense 3x3 convolutions
stayed at 43-47 ms (docs/prediction.md). A latency predictor trained on such samples predicts
memory-bound networks too slow, since a model in deployment runs in its own process.

:class:`FreshProcesses` starts one server (a new interpreter that imports the ``preload`` modules and
nothing else runs there) and forks it for every call, so each call starts from the server's small, clean
heap, with torch already imported (8 ms for an empty call on that VM, against 3.2 s to start an
interpreter that imports torch and torchvision). The server is a spawned process of its own; nothing in the caller's process
(``multiprocessing``'s settings, its forkserver) is touched. Forking needs POSIX; :func:`available` says
whether this platform has it (callers run in their own process where not).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable, Sequence
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

    ``fn`` and its arguments and result must pickle (``fn``: a module-level function the server can import).
    An exception in the child is raised again here as a :class:`~rooflens.errors.ModelError` naming it; a
    child that dies (a crash, a signal) raises one that says how it ended. Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(self, preload: Sequence[str] = ("torch",)) -> None:
        if not available():
            raise ModelError(f"fresh processes need fork(), which {sys.platform} lacks")
        ctx = multiprocessing.get_context("spawn")
        self._conn, theirs = ctx.Pipe()
        self._server = ctx.Process(target=_serve, args=(theirs, tuple(preload)), daemon=True,
                                   name="rooflens-fresh-server")
        self._server.start()
        theirs.close()

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            self._conn.send((fn, args))
            ok, value = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as e:
            raise ModelError(f"the fresh-process server stopped ({type(e).__name__}: {e})") from e
        if not ok:
            raise ModelError(f"{getattr(fn, '__name__', fn)} failed in a fresh process: {value}")
        result: T = value
        return result

    def close(self) -> None:
        if self._server.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._server.join(timeout=10)
        if self._server.is_alive():
            self._server.kill()
            self._server.join()
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _serve(conn: Any, preload: tuple[str, ...]) -> None:
    """The server: import ``preload``, then for every (fn, args) received fork a child that runs it and writes
    (ok, result or the error's text), pickled, back through a pipe, passed on as it is; a ``None`` ends it."""
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # an optional module (torchvision): the child imports it if it needs it, or fails saying so
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        fn, args = job
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, write the outcome, leave without running the server's clean-up
            os.close(read)
            try:
                out: tuple[bool, Any] = (True, fn(*args))
            except BaseException as e:  # noqa: BLE001 -- every failure goes back to the caller as text
                out = (False, f"{type(e).__name__}: {e}")
            try:
                data = pickle.dumps(out)
            except Exception as e:  # noqa: BLE001
                data = pickle.dumps((False, f"its result does not pickle ({type(e).__name__}: {e})"))
            with os.fdopen(write, "wb") as f:
                f.write(data)
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if not data:
            how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
            data = pickle.dumps((False, f"the process died ({how}) before it returned"))
        conn.send_bytes(data)  # unpickled by the caller, which has the result's modules
