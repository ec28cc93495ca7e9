"""One result model for every table kdistill prints: rows of typed, named columns, and where they were measured.

``eval``, ``demo``, ``compare``, ``distill-embeddings`` and every training run produce a ``ResultTable``; ``render.py``
turns the same object into a rich table, Markdown and JSON. The JSON is the record the report and a
hyper-parameter search read back, so it round-trips: ``ResultTable.from_json(path) == result``.

JSON layout (``results.json``)::

    {"format": "kdistill.result/1", "title": ..., "task": ..., "name_label": "Model",
     "columns": [{"key": "test_accuracy", "label": "Test acc", "kind": "percent", "unit": "fraction", ...}, ...],
     "rows": [{"name": "teacher", "test_accuracy": 0.97, ..., <row details>}, ...],
     "environment": {"torch": ..., "device": ..., "threads": ..., "cpu": ..., "kdistill": ..., "date": ...},
     "caption": ..., "command": ..., "details": {...}}

A row is flat (``row["test_accuracy"]``): its keys are ``name``, one per column (``None`` where not measured) and
its details (numbers kept but not shown, e.g. per-seed figures).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kdistill.errors import KdistillError

FORMAT = "kdistill.result/1"
KINDS = ("text", "int", "float", "percent", "points", "signed_percent", "ratio", "bytes")

Value = float | int | str | None


@dataclass(frozen=True)
class Column:
    """One named, typed column. ``kind`` says how a value is written (render.format_value):

    text: as is; int: 1,234; float: ``digits`` decimals (thousands separated); percent: a fraction as 12.34%;
    points: a fraction as 12.34 (the label says %); signed_percent: +12.3%; ratio: 1.23x; bytes: 1.5 MB.
    ``spread``: the key of a sample standard deviation shown in the same cell as ``mean ± std``.
    """

    key: str
    label: str
    kind: str = "float"
    digits: int = 4
    unit: str = ""
    spread: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise KdistillError(f"column {self.key!r}: unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")


@dataclass
class Row:
    name: str
    values: dict[str, Value]
    details: dict[str, Any] = field(default_factory=dict)  # kept in the JSON, not shown in the table


@dataclass
class Environment:
    torch: str
    device: str
    threads: int
    cpu: str
    kdistill: str
    python: str
    date: str  # UTC, ISO 8601

    @classmethod
    def capture(cls, device: str = "cpu", threads: int | None = None) -> Environment:
        """The machine the figures were measured on; ``threads``: torch's intra-op threads (default: current)."""
        import torch

        from kdistill import __version__

        return cls(torch=torch.__version__, device=_device_name(device), threads=threads or torch.get_num_threads(),
                   cpu=cpu_model(), kdistill=__version__, python=platform.python_version(),
                   date=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} logical cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)"


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


@dataclass
class ResultTable:
    """A titled table of rows over ``columns`` for one task, and the environment it was measured in."""

    title: str
    task: str
    columns: list[Column]
    rows: list[Row]
    environment: Environment
    caption: str = ""
    command: str | None = None
    name_label: str = "Model"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keys = self.value_keys()
        for row in self.rows:
            unknown = sorted(set(row.values) - keys)
            if unknown:
                raise KdistillError(f"row {row.name!r} has values {unknown} that no column of {self.title!r} names")
            clashes = sorted(set(row.details) & (keys | {"name"}))
            if clashes:
                raise KdistillError(f"row {row.name!r}: details {clashes} clash with its column keys")

    def value_keys(self) -> set[str]:
        return {c.key for c in self.columns} | {c.spread for c in self.columns if c.spread}

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        keys = [c.key for c in self.columns] + [c.spread for c in self.columns if c.spread]
        return {"format": FORMAT, "title": self.title, "task": self.task, "name_label": self.name_label,
                "columns": [asdict(c) for c in self.columns],
                "rows": [{"name": r.name, **{k: r.values.get(k) for k in keys}, **r.details} for r in self.rows],
                "environment": asdict(self.environment), "caption": self.caption, "command": self.command,
                "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultTable:
        if data.get("format") != FORMAT:
            raise KdistillError(f"not a kdistill result (format {data.get('format')!r}, expected {FORMAT!r})")
        columns = [Column(**c) for c in data["columns"]]
        keys = {c.key for c in columns} | {c.spread for c in columns if c.spread}
        rows = [Row(r["name"], {k: v for k, v in r.items() if k in keys},
                    {k: v for k, v in r.items() if k not in keys and k != "name"}) for r in data["rows"]]
        known = {f.name for f in fields(Environment)}
        return cls(title=data["title"], task=data["task"], columns=columns, rows=rows,
                   environment=Environment(**{k: v for k, v in data["environment"].items() if k in known}),
                   caption=data.get("caption", ""), command=data.get("command"),
                   name_label=data.get("name_label", "Model"), details=data.get("details", {}))

    def to_json(self, path: str | Path) -> Path:
        from kdistill.runs import write_json

        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> ResultTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KdistillError(f"cannot read result {str(path)!r}: {exc}") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise KdistillError(f"{path} is not a kdistill result: missing or unexpected {exc}") from None


# ----- the columns of each task -----

PARAMS = Column("parameters", "Params", "int", unit="count", description="trainable and frozen parameters")
SIZE = Column("size_bytes", "Size", "bytes", unit="B", description="weights saved as safetensors")
AGREE = Column("agreement", "Agree", "percent", unit="fraction", description="same top-1 as the teacher")
LATENCY = Column("latency_ms", "ms (b=1)", "float", 3, unit="ms", description="batch 1, median, CPU")

TASK_COLUMNS: dict[str, list[Column]] = {
    "classification": [
        PARAMS, SIZE,
        Column("test_accuracy", "Test acc", "percent", unit="fraction", description="top-1 on the test split"),
        AGREE,
        Column("ece", "ECE", "float", 4, unit="fraction", description="expected calibration error, 15 bins"),
        LATENCY,
        Column("throughput", "samples/s", "float", 0, unit="samples/s", description="at the throughput batch"),
    ],
    "causal-lm": [
        PARAMS, SIZE,
        Column("test_loss", "Loss/token", "float", 4, unit="nats", description="cross-entropy per target token"),
        Column("perplexity", "Perplexity", "float", 3, description="exp(loss per token)"),
        Column("test_accuracy", "Next-token acc", "percent", unit="fraction"),
        Column("agreement", "Agree", "percent", unit="fraction", description="same top-1 token as the teacher"),
        Column("latency_ms", "ms (b=1)", "float", 3, unit="ms", description="one max_length sequence, median"),
        Column("tokens_per_s", "tokens/s", "float", 0, unit="tokens/s"),
    ],
    "embedding": [
        Column("cosine_to_teacher", "cosine to teacher", "float", 4, description="mean cosine of the embeddings"),
        Column("top10_overlap", "top-10 overlap", "float", 4, description="shared share of 10 nearest neighbours"),
        Column("parameters", "parameters", "int", unit="count"),
        Column("size_mb", "size (MB)", "float", 1, unit="MiB", description="float32 parameters"),
        Column("latency_ms", "latency (ms/32)", "float", 1, unit="ms", description="one batch of 32 sentences"),
    ],
}


def columns_for(task: str) -> list[Column]:
    if task not in TASK_COLUMNS:
        raise KdistillError(f"no result columns for task {task!r}; known: {', '.join(TASK_COLUMNS)}")
    return list(TASK_COLUMNS[task])


# summary.json key -> column key, for the result a training run writes into its folder
STUDENT_SUMMARY_KEYS = {"test_accuracy": "test_accuracy", "test_ece": "ece", "test_agreement": "agreement",
                        "test_loss": "test_loss", "test_perplexity": "perplexity",
                        "test_cosine_to_teacher": "cosine_to_teacher", "test_top10_overlap": "top10_overlap"}
TEACHER_SUMMARY_KEYS = {"teacher_test_accuracy": "test_accuracy", "teacher_test_perplexity": "perplexity"}


def training_result(title: str, task: str, summary: dict[str, Any], parameters: int, size_bytes: int | None,
                    device: str) -> ResultTable:
    """A finished run's test figures as a result (the student, and the teacher where the summary has its figures);
    speed is not measured by a run (``kdistill eval`` does). The whole summary is kept in ``details``."""
    columns = columns_for(task)
    keys = {c.key for c in columns}

    def picked(names: dict[str, str]) -> dict[str, Value]:
        return {column: summary[key] for key, column in names.items() if key in summary and column in keys}

    student = picked(STUDENT_SUMMARY_KEYS)
    student["parameters"] = parameters
    if "size_bytes" in keys:
        student["size_bytes"] = size_bytes
    rows = [Row("student", student)]
    teacher = picked(TEACHER_SUMMARY_KEYS)
    if teacher:
        rows.insert(0, Row("teacher", teacher))
    return ResultTable(title, task, columns, rows, Environment.capture(device), details={"summary": summary})
