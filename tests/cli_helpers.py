"""Shared by the CLI tests: the real entry point, called in-process."""

from __future__ import annotations

import sys

from kdistill import cli


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Call ``kdistill.cli.main`` in-process; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["kdistill", *args])
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that table rows are not wrapped: every command's console
    code: int | str | None = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return int(code or 0), out, err
