"""Fingerprints that tie a store to the run it was built for: teacher weights, the whole training data, transform."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdistill.config import DataConfig
from kdistill.data.base import DataSplits, TensorDataset

_CHUNK = 4096  # items hashed per step: memory stays bounded for any data-set size
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


def _item_arrays(dataset: Dataset, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, D) as float32 and labels (n, L) as int64 of items [start, stop): the tensors themselves when the
    data set holds them (classes, or token ids and target labels), else item by item."""
    if isinstance(dataset, TensorDataset):
        inputs, labels = dataset.inputs[start:stop], dataset.targets[start:stop].reshape(-1, 1)
    elif hasattr(dataset, "input_ids") and hasattr(dataset, "labels"):
        inputs, labels = dataset.input_ids[start:stop], dataset.labels[start:stop]
    else:
        items = [dataset[i] for i in range(start, stop)]
        inputs = torch.stack([item.get("input", item.get("input_ids")) for item in items])
        labels = torch.stack([item.get("target", item.get("labels")).reshape(-1) for item in items])
    inputs = inputs.reshape(len(inputs), -1).float().numpy().astype("<f4", copy=False)
    return inputs, labels.reshape(len(labels), -1).long().numpy().astype("<i8", copy=False)


def data_fingerprint(config: DataConfig, splits: DataSplits) -> dict:
    """Name, split sizes, and a fingerprint of every training item, streamed in chunks (cheap next to a teacher pass).

    Exact sha256 digests of all inputs and of all labels, plus a per-item signature (sum and a fixed random
    projection of the input, and the label sum): normalisation statistics can differ in the last bit between
    thread counts, which changes the bytes but not the data, so ``compare_data`` accepts inputs whose signatures
    agree to ``1e-4`` relative, and otherwise says which items changed.
    """
    train = splits.train
    inputs_digest, labels_digest, signature, projection = hashlib.sha256(), hashlib.sha256(), [], None
    for start in range(0, len(train), _CHUNK):
        inputs, labels = _item_arrays(train, start, min(start + _CHUNK, len(train)))
        inputs_digest.update(inputs.tobytes())
        labels_digest.update(labels.tobytes())
        if projection is None:
            projection = np.random.default_rng(0).choice([-1.0, 1.0], size=inputs.shape[1])
        wide = inputs.astype(np.float64)
        signature.append(np.stack([wide.sum(1), wide @ projection, labels.sum(1).astype(np.float64)], axis=1))
    table = np.concatenate(signature).astype("<f4") if signature else np.zeros((0, 3), "<f4")
    return {
        "name": config.name,
        "split_sizes": [len(splits.train), len(splits.val), len(splits.test)],
        "num_classes": splits.num_classes,
        "input_shape": list(splits.input_shape),
        "inputs_sha256": inputs_digest.hexdigest(),
        "labels_sha256": labels_digest.hexdigest(),
        "item_signature": base64.b64encode(table.tobytes()).decode(),  # (N, 3) float32: sum, projection, labels
    }


def _signature(fingerprint: dict) -> np.ndarray:
    table = np.frombuffer(base64.b64decode(fingerprint["item_signature"]), dtype="<f4")
    return table.astype(np.float64).reshape(-1, 3)


def _items(positions: np.ndarray, total: int) -> str:
    shown = ", ".join(str(int(p)) for p in positions[:5])
    return f"{len(positions)} of {total} training items (e.g. items {shown})"


def compare_data(stored: dict, current: dict) -> str | None:
    """None when both fingerprints describe the same data, else which part differs (split, labels, inputs)."""
    if "inputs_sha256" not in stored:
        return "the cache was built by an older kdistill that fingerprinted only a sample of the data; rebuild it"
    labels = {"name": "data set name", "split_sizes": "split (train/val/test sizes)", "num_classes": "class count",
              "input_shape": "input shape"}
    for key, what in labels.items():
        if stored.get(key) != current.get(key):
            return f"{what} differs: cache has {stored.get(key)}, this run has {current.get(key)}"
    old, new = _signature(stored), _signature(current)
    if stored["labels_sha256"] != current["labels_sha256"]:
        changed = np.flatnonzero(old[:, 2] != new[:, 2])
        return "train labels differ" + (f" at {_items(changed, len(old))}" if len(changed) else " (order)")
    if stored["inputs_sha256"] == current["inputs_sha256"]:
        return None
    scale = max(1.0, float(np.abs(old[:, :2]).max(initial=0.0)))
    close = np.isclose(old[:, :2], new[:, :2], rtol=_SIGNATURE_RTOL, atol=_SIGNATURE_RTOL * scale).all(axis=1)
    if not close.all():
        return f"train input values differ at {_items(np.flatnonzero(~close), len(old))}"
    return None
