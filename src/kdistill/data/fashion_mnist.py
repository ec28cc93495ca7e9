"""Fashion-MNIST from its four IDX files (28x28 grey, 10 classes, 60k train / 10k test)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from kdistill.config import DataConfig
from kdistill.data.base import DATA_SOURCES, DataSplits, build_tensor_splits
from kdistill.errors import DataError

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
HOW_TO_GET = (
    "install the Debian package (sudo apt-get install dataset-fashion-mnist) or download the four IDX files "
    "from https://github.com/zalandoresearch/fashion-mnist and set data.root (or KDISTILL_DATA) to their folder"
)


def candidate_dirs(root: str | None) -> list[Path]:
    dirs = [root, os.environ.get("KDISTILL_DATA"), DEBIAN_DIR, str(Path.home() / ".cache/kdistill/fashion-mnist")]
    return [Path(d) for d in dirs if d]


def find_file(stem: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic (0, 0, dtype 0x08, ndim), big-endian sizes, then bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise DataError(f"{path} is truncated: header says {expected} values, file holds {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def read_fashion_mnist(root: str | None) -> dict[str, np.ndarray]:
    dirs = candidate_dirs(root)
    arrays = {}
    for key, stem in FILES.items():
        path = find_file(stem, dirs)
        if path is None:
            looked = ", ".join(str(d) for d in dirs)
            raise DataError(f"Fashion-MNIST file {stem}(.gz) not found (looked in {looked}); {HOW_TO_GET}")
        arrays[key] = read_idx(path)
    return arrays


@DATA_SOURCES.register("fashion-mnist")
def load_fashion_mnist(config: DataConfig, argument: str | None = None) -> DataSplits:
    arrays = read_fashion_mnist(config.root)
    as_images = lambda a: torch.from_numpy(a.copy()).float().div_(255.0).unsqueeze(1)  # noqa: E731  (N, 1, 28, 28)
    return build_tensor_splits(
        config,
        as_images(arrays["train_images"]),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        as_images(arrays["test_images"]),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        CLASS_NAMES,
        "Fashion-MNIST",
        origins={"train": f"rest of the {len(arrays['train_images'])} training-file images",
                 "test": "the t10k test files"},
    )
