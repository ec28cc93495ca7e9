"""scikit-learn's handwritten digits: 1,797 grey 8x8 images, 10 classes; ships with scikit-learn (offline)."""

from __future__ import annotations

import torch

from kdistill.config import DataConfig
from kdistill.data.base import DATA_SOURCES, DataSplits, build_tensor_splits


@DATA_SOURCES.register("digits")
def load_digits(config: DataConfig, argument: str | None = None) -> DataSplits:
    pixels, labels = _read_digits_csv()
    images = torch.tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0  # (N, 1, 8, 8)
    targets = torch.tensor(labels, dtype=torch.long)
    names = [str(i) for i in range(10)]
    return build_tensor_splits(config, images, targets, None, None, names, "digits (scikit-learn)")


def _read_digits_csv():
    """scikit-learn's digits.csv.gz (64 pixels then the label per row), read without importing scikit-learn:
    its import alone holds ~78 MB of memory in every run on digits (measured, issue 18)."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        from kdistill.errors import DataError

        raise DataError("data 'digits' ships with scikit-learn: pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/digits.csv.gz"
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)
