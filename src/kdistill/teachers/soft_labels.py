"""``teacher: {kind: soft-labels, path: ...}``: a black-box teacher, known only by its outputs on the training split.

The file holds one row per training sample: C logits, or C probabilities (turned into log-probabilities, which give
every logit method the same softmax at any temperature, since softmax is shift-invariant). Rows are matched to
the training samples by position, or by an id column whose ids are the samples' indices in the training split
(``batch["index"]``), in any order. Formats: ``.npy`` (an (N, C) array), ``.npz`` (arrays named ``key`` and
``id_column``), ``.parquet`` (a list-valued column ``key``, an integer column ``id_column``; needs pyarrow).
Only logit methods can use it: there are no features and no outputs for validation, test or new inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill.errors import ConfigError
from kdistill.methods.base import LOGITS
from kdistill.outputs import ModelOutputs

PROBABILITY_FLOOR = 1e-12  # log(0) would be -inf: a class the teacher rules out gets a very low logit instead


def _read_columns(path: Path, key: str, id_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(values (N, ...), ids (N,) or None) from a .npy, .npz or .parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if id_column is not None:
            raise ConfigError(f"teacher.id_column: a .npy file holds one array, no ids; use .npz or .parquet ({path})")
        return np.load(path, allow_pickle=False), None
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.keys())
            for name in [key, id_column]:
                if name is not None and name not in names:
                    raise ConfigError(f"teacher file {str(path)!r} has no array {name!r} (arrays: {names})")
            return archive[key], (archive[id_column] if id_column else None)
    if suffix == ".parquet":
        return _read_parquet(path, key, id_column)
    raise ConfigError(f"teacher file {str(path)!r}: unknown format {suffix!r}; use .npy, .npz or .parquet")


def _read_parquet(path: Path, key: str, id_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("reading a .parquet teacher file needs pyarrow (pip install pyarrow); or use .npz") from None
    table = pq.read_table(path)
    for name in [key, id_column]:
        if name is not None and name not in table.column_names:
            raise ConfigError(f"teacher file {str(path)!r} has no column {name!r} (columns: {table.column_names})")
    values = np.asarray(table.column(key).to_pylist(), dtype=np.float32)
    ids = table.column(id_column).to_numpy() if id_column else None
    return values, ids


def _order_by_ids(values: np.ndarray, ids: np.ndarray, samples: int, where: str) -> np.ndarray:
    """Rows sorted so that row i is sample i; the ids must be exactly 0..samples-1."""
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ConfigError(f"{where}: ids must be one integer per row, got dtype {ids.dtype} and shape {ids.shape}")
    unique = np.unique(ids)
    if len(unique) != len(ids):
        raise ConfigError(f"{where}: {len(ids) - len(unique)} repeated ids; each training sample needs one row")
    missing = np.setdiff1d(np.arange(samples), unique)
    extra = np.setdiff1d(unique, np.arange(samples))
    if len(missing) or len(extra):
        raise ConfigError(f"{where}: the ids do not match the {samples} training samples (indices 0..{samples - 1}): "
                          f"{len(missing)} missing (first {missing[:3].tolist()}), {len(extra)} unknown "
                          f"(first {extra[:3].tolist()})")
    return values[np.argsort(ids)]


def load_soft_labels(teacher_config, samples: int, num_classes: int) -> torch.Tensor:
    """(samples, C) float32 teacher logits, row i for training sample i; any mismatch is one ConfigError."""
    path = Path(teacher_config.path)
    if not path.is_file():
        raise ConfigError(f"teacher.path {str(path)!r} not found")
    where = f"teacher file {str(path)!r}"
    values, ids = _read_columns(path, teacher_config.key or teacher_config.values, teacher_config.id_column)
    if values.ndim < 2 or values.shape[-1] != num_classes:
        raise ConfigError(f"{where} holds {values.shape[1:]} values per row but the data has {num_classes} classes")
    if len(values) != samples:
        raise ConfigError(f"{where} has {len(values)} rows but the training split has {samples} samples; write one "
                          "row per training sample (data.train_fraction and the split change which samples these are)")
    if ids is not None:
        values = _order_by_ids(values, ids, samples, where)
    values = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if not torch.isfinite(values).all():
        raise ConfigError(f"{where} contains NaN or infinite values")
    if teacher_config.values == "probabilities":
        if (values < 0).any():
            raise ConfigError(f"{where}: probabilities must be >= 0 (set teacher.values: logits for logits)")
        values = values.clamp_min(PROBABILITY_FLOOR).log()
    return values


class SoftLabelsTeacher:
    """Looks up each batch's rows by ``batch["index"]`` (the training split only)."""

    provides = frozenset({LOGITS})
    model = None

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits  # (N, C) on the CPU
        self.device = torch.device("cpu")

    @classmethod
    def from_config(cls, config, splits, task) -> SoftLabelsTeacher:
        return cls(load_soft_labels(config.teacher, len(splits.train), splits.num_classes))

    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        return ModelOutputs(logits=self.logits[batch["index"].cpu().long()].to(self.device))

    def probe(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        return self.outputs(batch)

    def tap(self, names: list[str]) -> None:
        if names:
            raise ConfigError(f"a soft-labels teacher has no features {names}")

    def to(self, device: torch.device) -> SoftLabelsTeacher:
        self.device = torch.device(device)
        return self

    def train_dataset(self, dataset: Dataset) -> Dataset:
        if len(dataset) != len(self.logits):
            raise ConfigError(f"the training set has {len(dataset)} samples, the soft labels {len(self.logits)}")
        return dataset

    def metrics_model(self) -> nn.Module | None:
        return None  # a black box: no agreement on the test split

    def close(self) -> None:
        pass
