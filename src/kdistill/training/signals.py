"""SIGTERM and SIGINT during training: finish the step, write a checkpoint, stop with a line saying how to resume.

A cluster scheduler sends SIGTERM before it kills a job; Ctrl-C sends SIGINT. While ``StopSignals`` is active either
only sets a flag; the loop checks it after every optimiser step (agreed across processes), checkpoints and raises
``TrainingInterrupted``, which the CLI turns into exit status 143 (SIGTERM) or 130 (SIGINT). A second Ctrl-C stops at
once (KeyboardInterrupt), without waiting for the step.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path

from kdistill.errors import TrainingInterrupted

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: records the first SIGTERM/SIGINT in ``received`` instead of dying."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for number in HANDLED:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = number

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()


def resume_command() -> str:
    """The command line that continues this run: the same one plus ``--resume`` (or the API call's equivalent)."""
    program = Path(sys.argv[0]) if sys.argv else Path()
    if not (program.name.startswith("kdistill") or program.parent.name == "kdistill"):  # `python -m kdistill`
        return "the same api.train/api.distill call with resume=True"
    args = [a for a in sys.argv[1:] if a not in ("--resume", "--overwrite")]
    return shlex.join(["kdistill", *args, "--resume"])


def interrupted(number: int, where: str, checkpoint: Path) -> TrainingInterrupted:
    name = signal.Signals(number).name
    return TrainingInterrupted(
        number, f"{name} received: stopped at {where}; checkpoint {checkpoint} written; resume with: {resume_command()}"
    )
