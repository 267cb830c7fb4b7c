"""rooflens.measurement.fresh: every call in a new process forked from a clean server."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from rooflens.errors import ModelError
from rooflens.measurement.fresh import FreshProcesses, available

pytestmark = pytest.mark.skipif(not available(), reason="fresh processes fork: Linux only")

STATE = "as imported"  # what a clean process sees; the test process changes it
CALLS = 0


def _seen() -> tuple[str, int, int]:
    global CALLS
    CALLS += 1
    return STATE, CALLS, os.getpid()


def _raises() -> None:
    raise ValueError("no shape (1, 2) here")


def _exits() -> None:
    os._exit(3)


def _killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _tensor_sum(n: int) -> float:
    import torch

    return float(torch.ones(n, n).sum())


@pytest.fixture(scope="module")
def fresh():
    with FreshProcesses() as runner:
        yield runner


def test_every_call_runs_in_a_new_process_that_has_none_of_the_callers_state(fresh, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "STATE", "changed by the caller")
    first, second = fresh(_seen), fresh(_seen)
    # the module as the server imported it, and a call's change to it is gone by the next call
    assert first[:2] == second[:2] == ("as imported", 1)
    assert len({first[2], second[2], os.getpid()}) == 3
    assert CALLS == 0 and STATE == "changed by the caller"  # nothing ran here
    assert fresh(_tensor_sum, 300) == 300 * 300  # torch runs in the child (the server imported it, ran nothing)


def test_failures_in_the_child_come_back_named(fresh):
    with pytest.raises(ModelError, match=r"_raises failed in a fresh process: ValueError: no shape \(1, 2\) here "
                                         r"\(at .*test_fresh\.py:\d+ in _raises\)"):
        fresh(_raises)
    with pytest.raises(ModelError, match=r"int failed in a fresh process: ValueError: invalid literal .*'x'$"):
        fresh(int, "x")  # raised by the call itself: no frame of the caller's code to name
    with pytest.raises(ModelError, match=r"_exits failed .* died \(exit status 3\) before it returned"):
        fresh(_exits)
    with pytest.raises(ModelError, match=rf"died \(signal {int(signal.SIGKILL)}\)"):
        fresh(_killed)
    assert fresh(_seen)[1] == 1  # the server goes on after a child died


def test_functions_of_the_main_script_are_refused_by_name(fresh):
    def in_a_script() -> int:
        return 1

    in_a_script.__module__ = "__main__"
    with pytest.raises(ModelError, match=r"in_a_script is defined in __main__: .* importable module"):
        fresh(in_a_script)


def test_a_job_the_server_cannot_import_is_refused_and_the_server_goes_on(fresh, tmp_path, monkeypatch):
    (tmp_path / "made_after_the_server.py").write_text("def one():\n    return 1\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not on the server's path (fixed at its start)
    from made_after_the_server import one

    with pytest.raises(ModelError, match=r"one failed in a fresh process: the job does not unpickle here "
                                         r"\(ModuleNotFoundError"):
        fresh(one)
    assert fresh(_seen)[1] == 1


def test_a_closed_runner_says_so():
    runner = FreshProcesses(preload=())
    runner.close()
    with pytest.raises(ModelError, match="the fresh-process server stopped"):
        runner(_seen)
