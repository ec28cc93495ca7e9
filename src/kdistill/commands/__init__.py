"""CLI sub-commands, one module per command group (each exposes a Typer ``app``)."""
