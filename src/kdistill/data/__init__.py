"""Data sources. Importing this package registers the built-in ones."""

from kdistill.data import digits, fashion_mnist, imagefolder, tabular, text  # noqa: F401  (registration)
from kdistill.data.base import DATA_SOURCES, DataSplits, RandomCropFlip, TensorDataset, load_data

__all__ = ["DATA_SOURCES", "DataSplits", "RandomCropFlip", "TensorDataset", "load_data"]
