"""Fingerprints that tie a store to the run it was built for: teacher weights, data set and transform."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdistill.config import DataConfig
from kdistill.data.base import DataSplits, TensorDataset

SAMPLE_SIZE = 64  # items whose inputs + targets are fingerprinted
_SIGNATURE_RTOL = 1e-4


def teacher_fingerprint(weights: str | Path) -> str:
    """sha256 over the state dict's tensors in sorted key order (name, dtype, shape and bytes of each)."""
    from kdistill.models.weights import read_state_dict

    state = read_state_dict(weights)
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{tensor.dtype}|{tuple(state[key].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def transform_config(config: DataConfig) -> dict:
    """The data options that change the split or the inputs the teacher sees."""
    keys = ("normalize", "augment_crop_padding", "augment_hflip", "train_fraction", "val_fraction", "test_fraction",
            "split_seed", "image_size")
    return {key: getattr(config, key) for key in keys}


def raw_input(dataset: Dataset, index: int) -> torch.Tensor:
    """The sample's input before augmentation (augmentation is replayed from stored parameters)."""
    if isinstance(dataset, TensorDataset):
        return dataset.inputs[index]
    return dataset[index]["input"]


def _fingerprinted_input(dataset: Dataset, index: int) -> torch.Tensor:
    """The raw input; for token data the ids followed by the labels (which tokens are targets matters too)."""
    if isinstance(dataset, TensorDataset):
        return dataset.inputs[index]
    item = dataset[index]
    if "labels" in item:
        return torch.cat([item["input_ids"], item["labels"]])
    return item["input"]


def _target(dataset: Dataset, index: int) -> int:
    """The class; for token data (no single target) the number of target tokens."""
    if isinstance(dataset, TensorDataset):
        return int(dataset.targets[index])
    item = dataset[index]
    if "target" not in item and "labels" in item:
        return int((item["labels"] != -100).sum())
    return int(item["target"])


def data_fingerprint(config: DataConfig, splits: DataSplits) -> dict:
    """Name, split sizes, and a content fingerprint of ``SAMPLE_SIZE`` evenly spaced training items.

    Besides the exact sha256 of the sample, two numbers per item (sum and a fixed random projection) are kept:
    normalisation statistics can differ in the last bit between thread counts, which changes the bytes but not the
    data, so ``compare_data`` accepts a sample whose signature agrees to ``1e-4`` relative.
    """
    train = splits.train
    count = len(train)
    positions = sorted({int(p) for p in np.linspace(0, count - 1, min(SAMPLE_SIZE, count)).round()})
    inputs = torch.stack([_fingerprinted_input(train, p).float().reshape(-1) for p in positions]).numpy()  # (S, D)
    targets = [_target(train, p) for p in positions]
    digest = hashlib.sha256(inputs.astype("<f4").tobytes())
    digest.update(np.asarray(targets, dtype="<i8").tobytes())
    projection = np.random.default_rng(0).choice([-1.0, 1.0], size=inputs.shape[1])
    signature = np.stack([inputs.astype(np.float64).sum(1), inputs.astype(np.float64) @ projection], axis=1)
    return {
        "name": config.name,
        "split_sizes": [len(splits.train), len(splits.val), len(splits.test)],
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "sample_positions": positions,
        "sample_targets": targets,
        "sample_sha256": digest.hexdigest(),
        "sample_signature": signature.round(6).tolist(),
    }


def compare_data(stored: dict, current: dict) -> str | None:
    """None when both fingerprints describe the same data, else what differs."""
    for key in ("name", "split_sizes", "num_classes", "input_shape", "sample_positions", "sample_targets"):
        if stored.get(key) != current.get(key):
            return f"data {key} differs: cache has {stored.get(key)}, this run has {current.get(key)}"
    if stored["sample_sha256"] == current["sample_sha256"]:
        return None
    old, new = np.asarray(stored["sample_signature"]), np.asarray(current["sample_signature"])
    scale = max(1.0, float(np.abs(old).max()))
    if not np.allclose(old, new, rtol=_SIGNATURE_RTOL, atol=_SIGNATURE_RTOL * scale):
        return "data input values differ (content fingerprint of the sampled training items)"
    return None
