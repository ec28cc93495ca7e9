"""Shared by the reliability tests: a tiny real run, the real CLI as a subprocess, and fault injection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kdistill

SRC = str(Path(kdistill.__file__).resolve().parents[1])  # the kdistill under test, also for subprocesses
TINY = ["--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs", "1",
        "--no-progress", "--accelerator", "cpu"]


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC, **extra}


def cli_args(*args: str) -> list[str]:
    """The real entry point (``kdistill.cli:main``) in a fresh interpreter."""
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'kdistill'; from kdistill.cli import main; main()",
            *args]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), cwd=cwd, env=cli_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def assert_one_error_line(code: int, err: str) -> str:
    """Exit 2 and exactly one ``error:`` line on stderr, no traceback; returns the line."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def flip_byte(path: Path, offset_from_end: int = 16) -> None:
    """Invert one byte near the end of a file (in the data, past any header)."""
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
