"""Stopping a child process that runs in a process group of its own.

chaos-dynamo starts its long-lived children (a lab, a command under audit) with
``start_new_session=True``, so a terminal's Ctrl-C reaches only chaos-dynamo, which then
decides how to stop them: SIGTERM to the whole group (the child cleans up, and whatever it
started in its group hears it too), a grace period, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock, wait_until

__all__ = ["KILL_WAIT", "stop_process_group"]

KILL_WAIT = 5.0
"""Seconds to wait for a child to be reaped after SIGKILL before giving up on it."""


def stop_process_group(process: subprocess.Popen[Any], *, grace: float, clock: Clock = REAL_CLOCK) -> int | None:
    """SIGTERM ``process``'s group, wait up to ``grace`` seconds for ``process`` to exit,
    SIGKILL the group if it has not; return its exit code.

    ``process`` should lead its group (``start_new_session=True``); one that does not is
    signalled alone. A child that has already exited is only reaped. None when it did not
    exit even after SIGKILL (a process stuck in the kernel), rather than waiting forever.
    """
    if process.poll() is not None:
        return process.returncode
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        _signal_group(process, signum)
        if wait_until(lambda: process.poll() is not None, wait, interval=0.05, clock=clock):
            return process.returncode
    return None


def _signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Signal the group ``process`` leads; the process alone if it leads none (it was not
    started in a session of its own)."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        if process.poll() is None:
            process.send_signal(signum)
