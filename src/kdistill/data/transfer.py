"""Transfer sets: a training split where only some items keep their labels.

Distillation pays most where labels are scarce and inputs plenty: the teacher labels the transfer set. Two ways to
get one (they combine):

- ``data.labeled_fraction: 0.05`` keeps the labels of a stratified 5% of the training split (seeded by
  ``split_seed``) and hides the rest (target -1, ``labeled`` False);
- ``data.unlabeled: <source>`` appends every input of a second data source (any source; its labels are ignored),
  normalised like the training split.

Unlabelled items get only the distillation terms: ``masked_task_loss`` averages the task loss over the labelled
items of a batch (exactly 0 when there are none). Plain training (``kdistill train``) keeps only the labelled items
(``training_items``): that is the baseline "student alone with 5% of the labels".
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from kdistill.config import DataConfig
from kdistill.data.base import DataSplits, TensorDataset, split_indices
from kdistill.errors import DataError

HIDDEN_TARGET = -1  # the target of an item whose label is hidden


def has_transfer_set(config: DataConfig) -> bool:
    return config.labeled_fraction < 1.0 or config.unlabeled is not None


def apply_transfer_set(config: DataConfig, splits: DataSplits, load) -> DataSplits:
    """The splits with labels hidden outside ``labeled_fraction`` and ``unlabeled``'s inputs appended to train.

    ``load`` is ``load_data`` (passed in to avoid an import cycle); validation and test keep all their labels.
    """
    train = splits.train
    if not isinstance(train, TensorDataset):
        raise DataError(f"data.labeled_fraction/data.unlabeled need an in-memory image or table source, not "
                        f"{config.name!r} (language models: not supported yet; train on the documents instead)")
    labeled = torch.ones(len(train), dtype=torch.bool)
    if config.labeled_fraction < 1.0:
        kept = split_indices(len(train), [config.labeled_fraction], config.split_seed + 3, train.targets)[0]
        labeled = torch.zeros(len(train), dtype=torch.bool)
        labeled[kept] = True
    inputs, targets = train.inputs, train.targets.masked_fill(~labeled, HIDDEN_TARGET)
    share = f"{config.labeled_fraction:.0%}, stratified, split_seed {config.split_seed}"
    origin = f"{int(labeled.sum())} labelled ({share})"
    if config.unlabeled is not None:
        extra = unlabeled_inputs(config, splits, load)
        inputs = torch.cat([inputs, extra])
        targets = torch.cat([targets, torch.full((len(extra),), HIDDEN_TARGET, dtype=torch.long)])
        labeled = torch.cat([labeled, torch.zeros(len(extra), dtype=torch.bool)])
        origin += f" + {len(extra)} unlabelled from {config.unlabeled}"
    unlabelled = int((~labeled).sum())
    description = f"{splits.description}; transfer set: {origin}; {unlabelled} unlabelled in all"
    return replace(splits, train=TensorDataset(inputs, targets, train.augment, labeled), description=description)


def unlabeled_inputs(config: DataConfig, splits: DataSplits, load) -> torch.Tensor:
    """Every input (all splits) of ``config.unlabeled``, normalised with the main training split's statistics."""
    source_config = config.model_copy(update={"name": config.unlabeled, "unlabeled": None, "labeled_fraction": 1.0,
                                              "normalize": False, "mean": None, "std": None})
    source = load(source_config)
    parts = [getattr(split, "inputs", None) for split in (source.train, source.val, source.test)]
    if any(part is None for part in parts):
        raise DataError(f"data.unlabeled {config.unlabeled!r} must be an in-memory image or table source")
    inputs = torch.cat(parts)
    if tuple(inputs.shape[1:]) != tuple(splits.input_shape):
        raise DataError(f"data.unlabeled {config.unlabeled!r} has inputs of shape {tuple(inputs.shape[1:])}, the "
                        f"training data {tuple(splits.input_shape)}; set data.image_size or pick matching data")
    if splits.normalization is not None:
        mean, std = splits.normalization
        inputs = (inputs - mean) / std
    return inputs


def label_counts(dataset) -> tuple[int, int]:
    """(labelled, unlabelled) items of a training set; a set without flags is all labelled."""
    labeled = getattr(dataset, "labeled", None)
    if labeled is None:
        return len(dataset), 0
    return int(labeled.sum()), int((~labeled).sum())


def training_items(splits: DataSplits, distilling: bool) -> torch.utils.data.Dataset:
    """The training set a run uses: all of it when distilling, only the labelled items in plain training."""
    train = splits.train
    labeled = getattr(train, "labeled", None)
    if distilling or labeled is None or bool(labeled.all()):
        return train
    keep = torch.nonzero(labeled).flatten()
    all_labeled = torch.ones(len(keep), dtype=torch.bool)
    return TensorDataset(train.inputs[keep], train.targets[keep], train.augment, all_labeled)


def masked_task_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy averaged over the batch's labelled items (flags ``labeled``, else targets >= 0).

    Mixed batches (``soft_target``, (B, C) from ``data.mixing``) use the mixed labels. Exactly 0, with a gradient
    path, when no item is labelled, so unlabelled batches add only the distillation terms.
    """
    logits = logits.float()  # (B, C)
    labeled = batch.get("labeled")
    if labeled is None:  # batches without flags (e.g. a cache's replayed views): hidden labels are HIDDEN_TARGET
        labeled = batch["target"] >= 0
    if "soft_target" in batch:
        per_item = -(batch["soft_target"].float() * F.log_softmax(logits, dim=-1)).sum(-1)
    else:
        per_item = F.cross_entropy(logits, batch["target"].clamp_min(0), reduction="none")
    weights = labeled.to(per_item.dtype)
    return (per_item * weights).sum() / weights.sum().clamp_min(1.0)


def run_data_summary(splits: DataSplits, train_set) -> dict:
    """What a run trains on, for its first console line and summary.json."""
    labeled, unlabeled = label_counts(train_set)
    return {"data_splits": splits.description, "train_labeled": labeled, "train_unlabeled": unlabeled}


def data_line(summary: dict) -> str:
    return (f"data: {summary['data_splits']}; this run trains on {summary['train_labeled']} labelled + "
            f"{summary['train_unlabeled']} unlabelled items")
