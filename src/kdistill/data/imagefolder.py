"""imagefolder:<path>: one sub-folder per class (torchvision's ImageFolder layout).

Split folders are honoured by name (see docs/data.md): ``train/`` is the training split, ``val/`` the validation
split and ``test/`` the test split; a split whose folder is missing is carved out of ``train/`` (test:
``data.test_fraction`` of it, val: ``data.val_fraction`` of the rest, both stratified with ``data.split_seed``).
Without ``train/`` the one folder is split at random. Images are resized to ``data.image_size`` (default 32) and
held in memory, which suits the small data sets distillation students are trained on; see README limitations.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kdistill.config import DataConfig
from kdistill.data.base import DATA_SOURCES, DataSplits, build_tensor_splits
from kdistill.errors import DataError


def _read_folder(folder: Path, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    try:
        dataset = datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"imagefolder {str(folder)!r}: {exc}".replace("\n", " ")) from None
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return images, torch.tensor(dataset.targets), dataset.classes


def _read_split(root: Path, name: str, size: int, classes: list[str]) -> tuple[torch.Tensor | None, ...]:
    """(images, targets) of ``root/name`` if that folder exists, else (None, None); classes must match train's."""
    folder = root / name
    if not folder.is_dir():
        return None, None
    images, targets, folder_classes = _read_folder(folder, size)
    if folder_classes != classes:
        raise DataError(f"{folder} classes {folder_classes} differ from train classes {classes}")
    return images, targets


@DATA_SOURCES.register("imagefolder")
def load_imagefolder(config: DataConfig, argument: str | None) -> DataSplits:
    root = Path(argument or "")
    if not root.is_dir():
        raise DataError(f"imagefolder path {str(root)!r} is not a folder")
    size = config.image_size or 32
    if not (root / "train").is_dir():
        train_x, train_y, classes = _read_folder(root, size)
        return build_tensor_splits(config, train_x, train_y, None, None, classes, f"imagefolder {root.name}",
                                   origins={"train": f"{root.name}/, the rest"})
    train_x, train_y, classes = _read_folder(root / "train", size)
    val_x, val_y = _read_split(root, "val", size, classes)
    test_x, test_y = _read_split(root, "test", size, classes)
    origins = {"train": "train/"}
    if val_x is not None:
        origins["val"] = "val/"
    if test_x is not None:
        origins["test"] = "test/"
    carved = [split for split, x in (("test", test_x), ("val", val_x)) if x is None]
    if carved:
        origins["train"] = f"train/ minus the {' and '.join(carved)} split"
    return build_tensor_splits(config, train_x, train_y, test_x, test_y, classes, f"imagefolder {root.name}",
                               val_x=val_x, val_y=val_y, origins=origins)
