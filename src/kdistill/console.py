"""The rich console of the command line."""

from __future__ import annotations

import os

from rich.console import Console

PIPED_WIDTH = 160  # rich's 80 columns when output is piped or logged would squeeze the result tables


def cli_console() -> Console:
    """The terminal's width when there is one; otherwise PIPED_WIDTH columns (COLUMNS still wins)."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(width=PIPED_WIDTH)
