"""The one renderer of ``ResultTable``: a rich table, Markdown and JSON show the same rows and the same cells."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdistill.results import Column, ResultTable, Row, Value

MISSING = "-"  # a value that was not measured (no teacher, no speed pass, one seed)


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def format_value(column: Column, value: Value) -> str:
    if value is None:
        return MISSING
    if column.kind == "text":
        return str(value)
    if column.kind == "int":
        return f"{int(value):,}"
    if column.kind == "percent":
        return f"{100 * value:.2f}%"
    if column.kind == "points":
        return f"{100 * value:.2f}"
    if column.kind == "signed_percent":
        return f"{100 * value:+.1f}%"
    if column.kind == "ratio":
        return f"{value:.2f}x"
    if column.kind == "bytes":
        return human_bytes(value)
    return f"{value:,.{column.digits}f}"


def format_cell(column: Column, row: Row) -> str:
    text = format_value(column, row.values.get(column.key))
    spread = row.values.get(column.spread) if column.spread else None
    if spread is not None:  # the std is in the same unit as the mean
        text += " ± " + format_value(column, spread).rstrip("%")
    return text


def cells(result: ResultTable) -> list[list[str]]:
    """Every row as strings: the name, then one cell per column."""
    return [[row.name] + [format_cell(column, row) for column in result.columns] for row in result.rows]


def header(result: ResultTable) -> list[str]:
    return [result.name_label] + [column.label for column in result.columns]


def _right_aligned(column: Column) -> bool:
    return column.kind != "text"


def rich_table(result: ResultTable) -> Table:
    table = Table(title=result.title, caption=result.caption or None)
    table.add_column(result.name_label, justify="left")
    for column in result.columns:
        table.add_column(column.label, justify="right" if _right_aligned(column) else "left")
    for row in cells(result):
        table.add_row(*row)
    return table


def environment_line(result: ResultTable) -> str:
    env = result.environment
    threads = f"{env.threads} thread" + ("s" if env.threads != 1 else "")
    return (f"Measured with torch {env.torch} on {env.device}, {threads}, {env.cpu}; "
            f"kdistill {env.kdistill}, Python {env.python}; {env.date}.")


def markdown(result: ResultTable) -> str:
    align = ["---"] + ["---:" if _right_aligned(column) else "---" for column in result.columns]
    lines = ["| " + " | ".join(header(result)) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells(result)]
    parts = [f"# {result.title}"]
    if result.command:
        parts.append(f"Command:\n\n```\n{result.command}\n```")
    parts.append("\n".join(lines))
    if result.caption:
        parts.append(result.caption)
    parts.append(environment_line(result))
    return "\n\n".join(parts) + "\n"


def save(result: ResultTable, folder: str | Path, with_markdown: bool = True) -> Path:
    """``results.json`` (and ``results.md``) in ``folder``; returns the JSON's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if with_markdown:
        (folder / "results.md").write_text(markdown(result))
    return result.to_json(folder / "results.json")


def print_result(result: ResultTable, console: Console | None = None) -> None:
    """The table, then where it was measured (the same line results.md ends with)."""
    console = console or Console()
    console.print(rich_table(result))
    console.print(environment_line(result), style="dim", markup=False, highlight=False)
