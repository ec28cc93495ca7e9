"""imagefolder:<path>: one sub-folder per class (torchvision's ImageFolder layout).

If the folder has ``train/`` (and optionally ``val/``, ``test/``) sub-folders they are used as splits;
otherwise one folder is split at random. Images are resized to ``data.image_size`` (default 32) and held
in memory, which suits the small data sets distillation students are trained on; see README limitations.
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


@DATA_SOURCES.register("imagefolder")
def load_imagefolder(config: DataConfig, argument: str | None) -> DataSplits:
    root = Path(argument or "")
    if not root.is_dir():
        raise DataError(f"imagefolder path {str(root)!r} is not a folder")
    size = config.image_size or 32
    if (root / "train").is_dir():
        train_x, train_y, classes = _read_folder(root / "train", size)
        test_dir = root / "test" if (root / "test").is_dir() else root / "val" if (root / "val").is_dir() else None
        test_x, test_y = (None, None)
        if test_dir is not None:
            test_x, test_y, test_classes = _read_folder(test_dir, size)
            if test_classes != classes:
                raise DataError(f"{test_dir} classes {test_classes} differ from train classes {classes}")
    else:
        train_x, train_y, classes = _read_folder(root, size)
        test_x = test_y = None
    return build_tensor_splits(config, train_x, train_y, test_x, test_y, classes, f"imagefolder {root.name}")
