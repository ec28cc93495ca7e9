"""csv:<path>: tabular data, one row a sample; numeric feature columns and one label column (named in config)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from kdistill.config import DataConfig
from kdistill.data.base import DATA_SOURCES, DataSplits, build_tensor_splits
from kdistill.errors import DataError


@DATA_SOURCES.register("csv")
def load_csv(config: DataConfig, argument: str | None) -> DataSplits:
    path = Path(argument or "")
    if not path.is_file():
        raise DataError(f"csv file {str(path)!r} not found (data.name is {config.name!r})")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if config.label_column not in header:
        raise DataError(f"{path}: label column {config.label_column!r} not in header {header}; set data.label_column")
    label_at = header.index(config.label_column)
    numbered = [(line_number, row) for line_number, row in enumerate(body, start=2) if row]  # skip blank lines
    if not numbered:
        raise DataError(f"{path}: needs a header row and at least one data row")
    for line_number, row in numbered:
        if len(row) != len(header):
            raise DataError(f"{path}:{line_number}: {len(row)} fields, header has {len(header)}")
    labels_raw = [row[label_at].strip() for _, row in numbered]
    for (line_number, _), label in zip(numbered, labels_raw, strict=True):
        if label == "" or (_is_number(label) and not math.isfinite(float(label))):  # not an extra class "nan"
            raise DataError(f"{path}:{line_number}: label {label!r} in column {config.label_column!r} is missing or "
                            "not finite; give every row a label (or drop the row)")
    class_names = sorted(set(labels_raw), key=lambda v: (not _is_number(v), float(v) if _is_number(v) else 0, v))
    lookup = {name: i for i, name in enumerate(class_names)}
    features = []
    for line_number, row in numbered:
        try:
            features.append([float(v) for i, v in enumerate(row) if i != label_at])
        except ValueError as exc:
            raise DataError(
                f"{path}:{line_number}: non-numeric feature ({exc}); encode categories as numbers"
            ) from None
        bad = [header[i] for i, v in enumerate(row) if i != label_at and not math.isfinite(float(v))]
        if bad:  # NaN/inf would pass silently into training, validation and test metrics
            raise DataError(f"{path}:{line_number}: non-finite value in column(s) {', '.join(bad)}; impute or drop "
                            "the row")
    inputs = torch.tensor(features, dtype=torch.float32)
    targets = torch.tensor([lookup[v] for v in labels_raw], dtype=torch.long)
    return build_tensor_splits(config, inputs, targets, None, None, class_names, f"csv {path.name}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
