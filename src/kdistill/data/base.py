"""The data interface: a source turns a DataConfig into train/val/test splits of dict batches.

Every item is a dict: ``{"input": tensor, "target": int tensor, "index": int tensor}``. The index lets an
offline teacher (a cache) find the outputs it stored for that sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from kdistill.config import DataConfig
from kdistill.errors import DataError
from kdistill.registry import Registry


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    class_names: list[str] = field(default_factory=list)
    description: str = ""

    def sample_input(self) -> torch.Tensor:
        """A batch of one training input, for shape checks and layer listings."""
        return self.train[0]["input"].unsqueeze(0)


# A source is called with the config and the part after ``name:`` (a path for imagefolder/csv, else None).
DataSource = Callable[[DataConfig, "str | None"], DataSplits]
DATA_SOURCES: Registry[DataSource] = Registry("data source")


def load_data(config: DataConfig) -> DataSplits:
    """Resolve ``config.name`` (``digits``, ``csv:<path>`` ...) to its source and build the splits."""
    source_name, _, argument = config.name.partition(":")
    source = DATA_SOURCES.get(source_name)
    if source_name in ("imagefolder", "csv", "text", "jsonl") and not argument:
        raise DataError(f"data.name {config.name!r} needs a path, e.g. {source_name}:/path/to/data")
    return source(config, argument or None)


class RandomCropFlip:
    """Pad-and-crop plus horizontal flip on (C, H, W) tensors, with explicit parameters.

    Parameters are drawn by ``sample`` and applied by ``apply`` so that a view can be replayed exactly
    (what an offline teacher cache needs for augmented training).
    """

    def __init__(self, padding: int = 0, hflip: bool = False) -> None:
        self.padding = padding
        self.hflip = hflip

    @property
    def active(self) -> bool:
        return self.padding > 0 or self.hflip

    def sample(self, generator: torch.Generator | None = None) -> tuple[int, int, int]:
        """(dy, dx, flip): crop offset into the padded image and whether to flip."""
        span = 2 * self.padding + 1
        dy, dx = torch.randint(0, span, (2,), generator=generator).tolist()
        flip = int(self.hflip and torch.rand((), generator=generator).item() < 0.5)
        return dy, dx, flip

    def apply(self, image: torch.Tensor, params: tuple[int, int, int]) -> torch.Tensor:
        dy, dx, flip = params
        if self.padding:
            height, width = image.shape[-2:]
            padded = torch.nn.functional.pad(image, [self.padding] * 4)
            image = padded[..., dy : dy + height, dx : dx + width]
        return image.flip(-1) if flip else image


class TensorDataset(Dataset):
    """In-memory samples (N, ...) with integer targets; optional replayable augmentation."""

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        augment: RandomCropFlip | None = None,
    ) -> None:
        if len(inputs) != len(targets):
            raise DataError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs
        self.targets = targets.long()
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.inputs[index]
        if self.augment is not None:
            image = self.augment.apply(image, self.augment.sample())
        return {"input": image, "target": self.targets[index], "index": torch.tensor(index)}


def split_indices(
    count: int, fractions: list[float], seed: int, stratify: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """Random (stratified when labels are given) split of range(count) into len(fractions)+1 parts.

    The last part receives what the fractions leave.
    """
    generator = torch.Generator().manual_seed(seed)
    groups = [torch.arange(count)] if stratify is None else [
        torch.nonzero(stratify == label).flatten() for label in torch.unique(stratify)
    ]
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for group in groups:
        group = group[torch.randperm(len(group), generator=generator)]
        start = 0
        for slot, fraction in enumerate(fractions):
            size = int(round(fraction * len(group)))
            parts[slot].append(group[start : start + size])
            start += size
        parts[-1].append(group[start:])
    return [torch.sort(torch.cat(p)).values for p in parts]


def build_tensor_splits(
    config: DataConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor | None,
    test_y: torch.Tensor | None,
    class_names: list[str],
    description: str,
) -> DataSplits:
    """Shared split/normalise/augment logic for in-memory sources."""
    if test_x is None or test_y is None:
        test_part, rest = split_indices(len(train_x), [config.test_fraction], config.split_seed, train_y)
        test_x, test_y = train_x[test_part], train_y[test_part]
        train_x, train_y = train_x[rest], train_y[rest]
    val_part, train_part = split_indices(len(train_x), [config.val_fraction], config.split_seed + 1, train_y)
    if config.train_fraction < 1.0:
        train_part = train_part[split_indices(len(train_part), [config.train_fraction], config.split_seed + 2,
                                              train_y[train_part])[0]]
    val_x, val_y = train_x[val_part], train_y[val_part]
    train_x, train_y = train_x[train_part], train_y[train_part]
    if len(train_x) == 0:
        raise DataError(f"data {config.name!r}: the training split is empty; lower val_fraction/test_fraction")
    if config.normalize:
        dims = [d for d in range(train_x.dim()) if d != 1] if train_x.dim() > 2 else [0]
        mean = train_x.mean(dim=dims, keepdim=True)
        std = train_x.std(dim=dims, keepdim=True).clamp_min(1e-6)
        train_x, val_x, test_x = ((x - mean) / std for x in (train_x, val_x, test_x))
    augment = RandomCropFlip(config.augment_crop_padding, config.augment_hflip) if train_x.dim() == 4 else None
    num_classes = len(class_names)
    return DataSplits(
        train=TensorDataset(train_x, train_y, augment),
        val=TensorDataset(val_x, val_y),
        test=TensorDataset(test_x, test_y),
        num_classes=num_classes,
        input_shape=tuple(train_x.shape[1:]),
        class_names=class_names,
        description=f"{description}: {len(train_x)} train / {len(val_x)} val / {len(test_x)} test",
    )
