"""Shared by the kill -9 tests: SIGKILL a real subprocess at a chosen point of its work."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds. Fails (naming ``what``) if the process exits first or
    ``timeout`` seconds pass; the process never outlives the call."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, _stderr_tail(process)
            assert time.monotonic() < deadline, f"{what} not reached in {timeout:g} s"
            time.sleep(0.005)  # short: a test that kills at a given step should overshoot it by little
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:  # a failed assertion above: do not leave the run behind
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _stderr_tail(process: subprocess.Popen) -> str:
    """What a process that exited too early wrote to stderr (when it was piped), for the failure message."""
    stderr = process.communicate()[1]
    return stderr.decode()[-2000:] if stderr else f"exited with status {process.returncode}"
