"""The teacher-vs-student table: one row per model, shown with rich and saved as Markdown and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdistill.runs import write_json


@dataclass
class ModelRow:
    name: str
    parameters: int
    size_bytes: int
    test_accuracy: float
    agreement: float | None  # with the teacher; None where there is no teacher to agree with
    ece: float
    latency_ms: float  # batch 1, median
    throughput: float  # samples/s


COLUMNS = ["Model", "Params", "Size", "Test acc", "Agree", "ECE", "ms (b=1)", "samples/s"]


def human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def format_row(row: ModelRow) -> list[str]:
    agreement = "-" if row.agreement is None else f"{100 * row.agreement:.2f}%"
    return [row.name, f"{row.parameters:,}", human_bytes(row.size_bytes), f"{100 * row.test_accuracy:.2f}%", agreement,
            f"{row.ece:.4f}", f"{row.latency_ms:.3f}", f"{row.throughput:,.0f}"]


def rich_table(rows: list[ModelRow], title: str, caption: str = "") -> Table:
    table = Table(title=title, caption=caption)
    for index, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*format_row(row))
    return table


def markdown_table(rows: list[ModelRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(format_row(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_table(rows: list[ModelRow], folder: Path, title: str, caption: str = "") -> None:
    (folder / "results.md").write_text(f"# {title}\n\n{markdown_table(rows)}\n{caption}\n")
    write_json(folder / "results.json", {"title": title, "caption": caption, "rows": [asdict(r) for r in rows]})


def print_table(rows: list[ModelRow], title: str, caption: str = "", console: Console | None = None) -> None:
    (console or Console()).print(rich_table(rows, title, caption))
