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
    test_accuracy: float  # causal-lm: next-token accuracy on the target tokens
    agreement: float | None  # with the teacher (causal-lm: top-1 per target token); None where there is no teacher
    ece: float | None  # None for language models
    latency_ms: float  # batch 1, median (causal-lm: one sequence of the data's max_length)
    throughput: float  # samples/s (causal-lm: tokens/s)
    task: str = "classification"
    test_loss: float | None = None  # causal-lm: cross-entropy per target token (nats)
    perplexity: float | None = None  # causal-lm: exp(test_loss)


COLUMNS = ["Model", "Params", "Size", "Test acc", "Agree", "ECE", "ms (b=1)", "samples/s"]
LM_COLUMNS = ["Model", "Params", "Size", "Loss/token", "Perplexity", "Next-token acc", "Agree", "ms (b=1)",
              "tokens/s"]


def human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def is_lm(rows: list[ModelRow]) -> bool:
    """True when the rows are language-model rows; one table never mixes tasks."""
    tasks = {row.task for row in rows}
    if len(tasks) > 1:
        raise ValueError(f"one table cannot mix tasks {sorted(tasks)}")
    return tasks == {"causal-lm"}


def columns_of(rows: list[ModelRow]) -> list[str]:
    return LM_COLUMNS if is_lm(rows) else COLUMNS


def format_row(row: ModelRow) -> list[str]:
    agreement = "-" if row.agreement is None else f"{100 * row.agreement:.2f}%"
    if row.task == "causal-lm":
        return [row.name, f"{row.parameters:,}", human_bytes(row.size_bytes), f"{row.test_loss:.4f}",
                f"{row.perplexity:.3f}", f"{100 * row.test_accuracy:.2f}%", agreement, f"{row.latency_ms:.3f}",
                f"{row.throughput:,.0f}"]
    return [row.name, f"{row.parameters:,}", human_bytes(row.size_bytes), f"{100 * row.test_accuracy:.2f}%", agreement,
            f"{row.ece:.4f}", f"{row.latency_ms:.3f}", f"{row.throughput:,.0f}"]


def row_dict(row: ModelRow) -> dict:
    """The JSON form: classification rows keep their original keys; LM rows name their own figures."""
    values = asdict(row)
    if row.task != "causal-lm":
        return {key: values[key] for key in ("name", "parameters", "size_bytes", "test_accuracy", "agreement", "ece",
                                             "latency_ms", "throughput")}
    return {"name": row.name, "task": row.task, "parameters": row.parameters, "size_bytes": row.size_bytes,
            "test_loss": row.test_loss, "perplexity": row.perplexity, "test_accuracy": row.test_accuracy,
            "agreement": row.agreement, "latency_ms": row.latency_ms, "tokens_per_s": row.throughput}


def rich_table(rows: list[ModelRow], title: str, caption: str = "") -> Table:
    table = Table(title=title, caption=caption)
    for index, column in enumerate(columns_of(rows)):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*format_row(row))
    return table


def markdown_table(rows: list[ModelRow]) -> str:
    columns = columns_of(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
    lines += ["| " + " | ".join(format_row(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_table(rows: list[ModelRow], folder: Path, title: str, caption: str = "") -> None:
    (folder / "results.md").write_text(f"# {title}\n\n{markdown_table(rows)}\n{caption}\n")
    write_json(folder / "results.json", {"title": title, "caption": caption, "rows": [row_dict(r) for r in rows]})


def print_table(rows: list[ModelRow], title: str, caption: str = "", console: Console | None = None) -> None:
    (console or Console()).print(rich_table(rows, title, caption))
