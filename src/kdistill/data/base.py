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
    description: str = ""  # one line: each split's size and where it comes from
    normalization: tuple[torch.Tensor, torch.Tensor] | None = None  # (mean, std) applied to the inputs

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
    splits = source(config, argument or None)
    from kdistill.data.transfer import apply_transfer_set, has_transfer_set  # transfer builds on this module

    return apply_transfer_set(config, splits, load_data) if has_transfer_set(config) else splits


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
    """In-memory samples (N, ...) with integer targets; optional replayable augmentation.

    ``labeled`` (N,) bool marks the items whose label may be used (a transfer set hides the others: their target is
    -1); when given, items carry a ``labeled`` flag so the task loss can skip the unlabelled ones.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        augment: RandomCropFlip | None = None,
        labeled: torch.Tensor | None = None,
    ) -> None:
        if len(inputs) != len(targets):
            raise DataError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs
        self.targets = targets.long()
        self.augment = augment if augment is not None and augment.active else None
        self.labeled = labeled

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.inputs[index]
        if self.augment is not None:
            image = self.augment.apply(image, self.augment.sample())
        item = {"input": image, "target": self.targets[index], "index": torch.tensor(index)}
        if self.labeled is not None:
            item["labeled"] = self.labeled[index]
        return item


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


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / max(whole, 1):.0f}%"


def normalization_stats(config: DataConfig, train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) broadcastable to the inputs: data.mean/data.std when fixed, else the training split's."""
    dims = [d for d in range(train_x.dim()) if d != 1] if train_x.dim() > 2 else [0]
    if config.mean is None or config.std is None:
        mean = train_x.mean(dim=dims, keepdim=True)
        return mean, train_x.std(dim=dims, keepdim=True).clamp_min(1e-6)
    channels = train_x.shape[1] if train_x.dim() > 1 else 1
    if len(config.mean) not in (1, channels):
        raise DataError(f"data.mean has {len(config.mean)} values, the inputs have {channels} channels (or give one)")
    shape = [1] * train_x.dim()
    shape[1] = len(config.mean)
    return torch.tensor(config.mean).view(shape), torch.tensor(config.std).view(shape)


def build_tensor_splits(
    config: DataConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor | None,
    test_y: torch.Tensor | None,
    class_names: list[str],
    description: str,
    *,
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    origins: dict[str, str] | None = None,
) -> DataSplits:
    """Shared split/normalise/augment logic for in-memory sources.

    Splits the source does not provide (``test_x``, ``val_x`` None) are carved out of the training data: test with
    ``test_fraction`` of all, val with ``val_fraction`` of what is left (stratified, ``split_seed``). ``origins``
    names where the given splits come from (e.g. ``{"test": "t10k files"}``) for the one-line split report.
    """
    origins = dict(origins or {})
    total = len(train_x)
    if test_x is None or test_y is None:
        test_part, rest = split_indices(len(train_x), [config.test_fraction], config.split_seed, train_y)
        test_x, test_y = train_x[test_part], train_y[test_part]
        train_x, train_y = train_x[rest], train_y[rest]
        origins["test"] = f"{_percent(len(test_x), total)} of all, split_seed {config.split_seed}"
    if val_x is None or val_y is None:
        val_part, train_part = split_indices(len(train_x), [config.val_fraction], config.split_seed + 1, train_y)
        val_x, val_y = train_x[val_part], train_y[val_part]
        origins["val"] = f"{_percent(len(val_part), len(train_x))} of train, split_seed {config.split_seed}"
    else:
        train_part = torch.arange(len(train_x))
    if config.train_fraction < 1.0:
        train_part = train_part[split_indices(len(train_part), [config.train_fraction], config.split_seed + 2,
                                              train_y[train_part])[0]]
    train_x, train_y = train_x[train_part], train_y[train_part]
    origins.setdefault("train", f"{_percent(len(train_x), total)} of all")
    if len(train_x) == 0:
        raise DataError(f"data {config.name!r}: the training split is empty; lower val_fraction/test_fraction")
    normalization = None
    if config.normalize:
        normalization = normalization_stats(config, train_x)
        mean, std = normalization
        train_x, val_x, test_x = ((x - mean) / std for x in (train_x, val_x, test_x))
    augment = RandomCropFlip(config.augment_crop_padding, config.augment_hflip) if train_x.dim() == 4 else None
    if config.function_matching:  # the batch mixer crops and flips per (epoch, sample), replayably
        augment = None
    sizes = {"train": len(train_x), "val": len(val_x), "test": len(test_x)}
    report = " / ".join(f"{split} {count} ({origins[split]})" for split, count in sizes.items())
    return DataSplits(
        train=TensorDataset(train_x, train_y, augment),
        val=TensorDataset(val_x, val_y),
        test=TensorDataset(test_x, test_y),
        num_classes=len(class_names),
        input_shape=tuple(train_x.shape[1:]),
        class_names=class_names,
        description=f"{description}: {report}",
        normalization=normalization,
    )
