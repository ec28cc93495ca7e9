"""scikit-learn's handwritten digits: 1,797 grey 8x8 images, 10 classes; ships with scikit-learn (offline)."""

from __future__ import annotations

import torch

from kdistill.config import DataConfig
from kdistill.data.base import DATA_SOURCES, DataSplits, build_tensor_splits


@DATA_SOURCES.register("digits")
def load_digits(config: DataConfig, argument: str | None = None) -> DataSplits:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    targets = torch.tensor(bunch.target, dtype=torch.long)
    names = [str(i) for i in range(10)]
    return build_tensor_splits(config, images, targets, None, None, names, "digits (scikit-learn)")
