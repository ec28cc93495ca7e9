"""The deploy table: bench rows (plain dicts) drawn with rich, and saved as bench.json and bench.md."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from kdistill.deploy.bench import BenchTable
from kdistill.render import human_bytes
from kdistill.runs import write_json

COLUMNS = ["Model", "Format", "Params", "Size", "MFLOPs", "Test acc", "ms b=1 (median)", "ms b=1 (p95)",
           "samples/s", "Peak mem"]


def cells(row: dict) -> list[str]:
    accuracy = "-" if row.get("test_accuracy") is None else f"{100 * row['test_accuracy']:.2f}%"
    memory = "-" if row.get("peak_memory_bytes") is None else human_bytes(row["peak_memory_bytes"])
    return [row["model"], row["format"], f"{row['parameters']:,}", human_bytes(row["size_bytes"]),
            f"{row['flops'] / 1e6:.2f}", accuracy, f"{row['latency_ms']:.3f}", f"{row['latency_p95_ms']:.3f}",
            f"{row['throughput']:,.0f}", memory]


def caption(table: BenchTable) -> str:
    env = table.environment
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    batch = table.rows[0]["throughput_batch"] if table.rows else "-"
    flags = env.get("int8_cpu_flags")  # absent from tables saved before it was recorded
    isa = f" ({', '.join(flags) or 'no AVX2/VNNI'})" if flags is not None else ""
    return (f"{env['machine']}{isa} ({env['cores']} cores), {env['threads']} thread(s) per runtime; {versions}. "
            f"Latency: batch 1 after warm-up; throughput at batch {batch}; peak memory: rise of peak RSS during a "
            f"batch-{batch} forward; FLOPs per sample (torch.utils.flop_counter).")


def render(table: BenchTable, title: str = "kdistill bench") -> Table:
    rich_table = Table(title=title, caption=caption(table))
    for index, column in enumerate(COLUMNS):
        rich_table.add_column(column, justify="left" if index < 2 else "right")
    for row in table.rows:
        rich_table.add_row(*cells(row))
    return rich_table


def markdown(table: BenchTable, title: str = "kdistill bench") -> str:
    lines = [f"## {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * 2 + "---:|" * (len(COLUMNS) - 2)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in table.rows]
    lines += ["", caption(table), *table.notes, ""]
    return "\n".join(lines)


def save(table: BenchTable, folder: Path, title: str = "kdistill bench") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "bench.json", table.as_dict())
    (folder / "bench.md").write_text(markdown(table, title))
