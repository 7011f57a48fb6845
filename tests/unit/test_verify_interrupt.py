"""Ctrl-C as the runner handles it, with real processes: chaos gets exactly one SIGINT and
the time to roll back; a second Ctrl-C kills it; signals become an Interrupt, not an exception."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.runner import Interrupt, run_chaos, signals_to

# A stand-in for `chaos run`: counts SIGINTs, and after the first "rolls back" for a moment
# (more SIGINTs would be counted meanwhile), then exits 5. With IGNORE it never exits.
CHILD = """
import signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
count = 0
def on_int(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[2] == "IGNORE" else on_int)
out.write_text("ready")
while count == 0:
    time.sleep(0.01)
time.sleep(0.3)
out.write_text(str(count))
sys.exit(5)
"""


def start(tmp_path: Path, mode: str, interrupt: Interrupt) -> tuple[Path, list[tuple[int, bool]], threading.Thread]:
    marker = tmp_path / "marker"
    results: list[tuple[int, bool]] = []
    thread = threading.Thread(target=lambda: results.append(
        run_chaos([sys.executable, "-c", CHILD, str(marker), mode], dict(os.environ), interrupt)))
    thread.start()
    assert wait_until(lambda: marker.exists(), timeout=30, interval=0.01)
    return marker, results, thread


def test_one_interrupt_passes_exactly_one_sigint_and_waits_for_the_rollback(tmp_path: Path) -> None:
    interrupt = Interrupt()
    marker, results, thread = start(tmp_path, "COUNT", interrupt)
    interrupt.signal()
    thread.join(timeout=30)
    assert results == [(5, True)]
    assert marker.read_text() == "1", "one SIGINT, however long the rollback takes"


def test_a_second_interrupt_kills_a_run_that_does_not_stop(tmp_path: Path) -> None:
    interrupt = Interrupt()
    _, results, thread = start(tmp_path, "IGNORE", interrupt)
    interrupt.signal()
    assert not interrupt.forced.is_set()
    interrupt.signal()
    thread.join(timeout=30)
    assert results == [(130, True)]


def test_a_run_that_ends_by_itself_is_not_interrupted(tmp_path: Path) -> None:
    code = run_chaos([sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ), Interrupt())
    assert code == (3, False)


def test_signals_become_an_interrupt_while_the_block_runs() -> None:
    interrupt = Interrupt()
    seen: list[bool] = []
    with signals_to(interrupt, lambda i: seen.append(i.forced.is_set())):
        os.kill(os.getpid(), signal.SIGINT)
        assert wait_until(interrupt.requested.is_set, timeout=5, interval=0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        assert wait_until(interrupt.forced.is_set, timeout=5, interval=0.01)
    assert seen == [False, True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the handler is put back"
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        wait_until(lambda: False, timeout=5, interval=0.01)


def test_a_closed_terminal_sighup_is_an_interrupt_too() -> None:
    """SIGHUP (the terminal closed) must roll back like Ctrl-C; its default action would
    kill verify at once and leave chaos and the labs without their rollbacks."""
    interrupt = Interrupt()
    before = signal.getsignal(signal.SIGHUP)
    with signals_to(interrupt):
        handler = signal.getsignal(signal.SIGHUP)
        assert handler not in (signal.SIG_DFL, signal.SIG_IGN, before), "SIGHUP is not handled"
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_until(interrupt.requested.is_set, timeout=5, interval=0.01)
    assert signal.getsignal(signal.SIGHUP) == before, "the handler is put back"


def test_only_verifys_own_interrupt_stops_the_pytest_session() -> None:
    """An outcome chaos interrupted by itself (a safeguard) is a failed item, not Ctrl-C."""
    from chaos_dynamo.pytest_plugin import stop_session_on_ctrl_c

    outcome = SimpleNamespace(status="failed", headline="FAILED: chaos interrupted the run: budget")
    stop_session_on_ctrl_c(outcome, Interrupt())  # type: ignore[arg-type]  # no Ctrl-C: nothing raised
    ours = Interrupt()
    ours.signal()
    with pytest.raises(KeyboardInterrupt, match="chaos interrupted the run"):
        stop_session_on_ctrl_c(outcome, ours)  # type: ignore[arg-type]


def test_stop_process_group_terminates_then_kills_what_ignores_it(tmp_path: Path) -> None:
    """The helper that stops verify's own labs: SIGTERM to the group, SIGKILL after the grace."""
    from chaos_dynamo.processes import stop_process_group

    def child(ignore: bool) -> subprocess.Popen[bytes]:
        marker = tmp_path / f"ready-{ignore}"
        code = ("import signal, sys, time, pathlib\n"
                + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore else "")
                + f"pathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(60)\n")
        process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        assert wait_until(marker.exists, timeout=30, interval=0.01)
        return process

    assert stop_process_group(child(ignore=False), grace=10) == -signal.SIGTERM
    assert stop_process_group(child(ignore=True), grace=0.2) == -signal.SIGKILL
    done = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    done.wait()
    assert stop_process_group(done, grace=1) == 0


def test_chaos_s_group_is_listed_before_chaos_is_reaped_so_a_reused_number_is_never_signalled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once chaos is reaped, the number of its (now empty) process group can go to a new session
    leader; listing "the group" then would find that stranger and SIGTERM it. The runner lists
    the group while chaos is still an unreaped zombie (its pid, and so the number, still taken).

    The stand-in /proc: the group is empty while chaos's /proc entry is a zombie, and holds an
    unrelated session leader once chaos is gone (the number reused)."""
    from chaos_dynamo import processes
    from chaos_dynamo.processes import ProcessInfo

    listed_while: list[str] = []
    signalled: list[list[ProcessInfo]] = []

    def group_members(pgid: int, procs: object = None) -> list[ProcessInfo]:
        try:
            state = Path(f"/proc/{pgid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            state = "gone"
        listed_while.append(state)
        return [] if state == "Z" else [ProcessInfo(pgid, 1, pgid, pgid, 10**12, ("stranger",))]

    monkeypatch.setattr(processes, "group_members", group_members)
    monkeypatch.setattr(processes, "stop_processes", lambda left, **kw: signalled.append(list(left)) or [])
    assert run_chaos([sys.executable, "-c", "import sys; sys.exit(4)"], dict(os.environ), Interrupt()) == (4, False)
    assert listed_while == ["Z"], "chaos's group must be listed while chaos is an unreaped zombie"
    assert signalled == [], "a process that took the group's number after chaos was reaped was signalled"


def test_a_run_stopped_by_an_error_while_waiting_stops_chaos_and_what_it_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the wait (here: the wait itself raising) still stops chaos's whole group."""
    import chaos_dynamo.runner as runner
    from chaos_dynamo.processes import read_process

    pids = tmp_path / "pids"
    script = ("import os, pathlib, subprocess, sys, time\n"
              "child = subprocess.Popen(['sleep', '60'])\n"
              f"pathlib.Path({str(pids)!r}).write_text(f'{{os.getpid()}} {{child.pid}}')\n"
              "time.sleep(60)\n")

    def broken_wait(process: subprocess.Popen[bytes], interrupt: Interrupt) -> tuple[bool, bool]:
        assert wait_until(lambda: pids.exists() and " " in pids.read_text(), timeout=30, interval=0.01)
        raise RuntimeError("the wait broke")

    monkeypatch.setattr(runner, "_wait_for_chaos", broken_wait)
    with pytest.raises(RuntimeError, match="the wait broke"):
        run_chaos([sys.executable, "-c", script], dict(os.environ), Interrupt())
    chaos_pid, sleep_pid = (int(p) for p in pids.read_text().split())
    assert read_process(chaos_pid) is None and wait_until(lambda: read_process(sleep_pid) is None, timeout=10)
