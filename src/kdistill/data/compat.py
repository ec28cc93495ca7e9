"""A teacher and its student see the same data: same source, root, class count, class names and order, input shape.

When the teacher comes from a run folder (``--teacher runs/t``, or weights inside one), that run's config.yaml and
data.json say what it was trained on. A distill run that does not name its data (no ``data`` key in the config
file, no ``--data``/``--data-root``/``--set data.*``) takes the teacher's, and says so in one line. A run that names
other data is refused before anything is trained, unless ``distill.allow_data_mismatch: true`` (e.g. a transfer
set on purpose).
"""

from __future__ import annotations

from pathlib import Path

from kdistill.config import DataConfig, RunConfig
from kdistill.data.base import DataSplits
from kdistill.errors import DataError
from kdistill.models.run_folder import read_data_record, read_run_config, run_folder_of

OVERRIDE = "--set distill.allow_data_mismatch=true"


def teacher_run(config: RunConfig) -> Path | None:
    """The run folder the teacher's weights come from, if any."""
    weights = getattr(config.teacher, "weights", None)  # a soft-labels teacher has none
    return run_folder_of(weights) if weights else None


def adopt_teacher_data(config: RunConfig, say=print) -> RunConfig:
    """``config`` with the teacher run's data when the config names no data of its own."""
    run = teacher_run(config)
    if run is None or "data" in config.model_fields_set:
        return config
    data = read_run_config(run).data
    say(f"data: {data.name} (from the teacher's run {run}; pass --data to choose other data)")
    return config.model_copy(update={"data": data})


def check_teacher_data(config: RunConfig, splits: DataSplits) -> None:
    """Refuse a student's data that differs from the teacher run's, naming both and the override."""
    run = teacher_run(config)
    if run is None or config.distill.allow_data_mismatch:
        return
    teacher_data = read_run_config(run).data
    differing = [key for key in ("name", "root") if _normalised(teacher_data, key) != _normalised(config.data, key)]
    record = read_data_record(run)
    if record is not None:  # runs written before the record was kept: the model's own shape check still runs
        ours = ours_record(config.data, splits)
        differing += [key for key, value in ours.items() if record.get(key) != value]
    if differing:
        raise DataError(
            f"the teacher ({run}) was trained on {_describe(teacher_data, record)} but this run uses "
            f"{_describe(config.data, ours_record(config.data, splits))} (differs in {', '.join(differing)}); "
            f"omit --data to use the teacher's data, or pass {OVERRIDE} if this is intended"
        )


def ours_record(data: DataConfig, splits: DataSplits) -> dict:
    return {"num_classes": splits.num_classes, "class_names": list(splits.class_names),
            "input_shape": list(splits.input_shape)}


def _normalised(data: DataConfig, key: str) -> str | None:
    """Paths compared as absolute paths (``csv:x.csv`` and ``csv:./x.csv`` are the same data)."""
    value = getattr(data, key)
    if value is None:
        return None
    if key == "root":
        return str(Path(value).resolve())
    source, _, argument = value.partition(":")
    return f"{source}:{Path(argument).resolve()}" if argument else source


def _describe(data: DataConfig, record: dict | None) -> str:
    text = data.name + (f" (root {data.root})" if data.root else "")
    if record is None:
        return text
    names = record["class_names"]
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{text}, {record['num_classes']} classes [{shown}], input {tuple(record['input_shape'])}"
