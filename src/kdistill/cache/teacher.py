"""CachedTeacher: the Teacher interface served from a store instead of a live model."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from kdistill.cache.compact import CompactOutputs
from kdistill.cache.errors import CacheError, CacheIncompleteError
from kdistill.cache.fingerprint import raw_input
from kdistill.cache.manifest import check_run
from kdistill.cache.store import CacheStore
from kdistill.config import ModelConfig, RunConfig
from kdistill.data.base import DataSplits
from kdistill.methods.base import LOGITS
from kdistill.outputs import ModelOutputs


class ReplayViews(Dataset):
    """The training set as the cache saw it: each item is one of its stored views, picked at random.

    The view's augmentation parameters are read from the store and applied with ``RandomCropFlip.apply``, so the
    student sees exactly the input the stored teacher outputs belong to; the item gets a ``view`` key for lookup.
    The choice uses torch's global generator, which DataLoader seeds per worker (reproducible under a fixed seed).
    """

    def __init__(self, dataset: Dataset, store: CacheStore) -> None:
        augment = getattr(dataset, "augment", None)
        if augment is None:
            raise CacheError("the cache stores augmented views but this training set has no augmentation to replay")
        self.dataset, self.store, self.augment = dataset, store, augment
        # (rows, 3) int16: read once, so an item costs no store access (6 bytes per view; 1.3 MB for 55k x 4).
        self.params = torch.from_numpy(store.read_field("params").astype(np.int64))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        view = int(torch.randint(self.store.views, ()))
        params = self.params[index * self.store.views + view].tolist()
        image = self.augment.apply(raw_input(self.dataset, index), tuple(params))
        return {"input": image, "target": self.dataset.targets[index], "index": torch.tensor(index),
                "view": torch.tensor(view)}


class CachedTeacher:
    """``teacher: {kind: cache, dir: ...}``. Looks up the stored outputs of (index, view) for each batch; logits
    rebuild the stored distribution: (B, C) for classifiers, (B, T, V) for language models (every position is
    stored). Top-k stores give an approximation (the rest mass spread over the other classes). Only logits are
    stored: no features, and only the training split."""

    provides = frozenset({LOGITS})
    model = None

    def __init__(self, store: CacheStore, reference: tuple[RunConfig, DataSplits] | None = None) -> None:
        self.store = store
        self.device = torch.device("cpu")
        self.reference = reference  # the run's (config, splits): to rebuild the teacher model for the final metrics

    @classmethod
    def from_config(cls, config: RunConfig, splits: DataSplits, task) -> CachedTeacher:
        teacher = open_cached_teacher(config.teacher.dir, config, splits)
        teacher.reference = (config, splits)
        return teacher

    def probe(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        if self.store.views > 1 and "view" not in batch:
            batch = {**batch, "view": torch.zeros_like(batch["index"])}
        return self.outputs(batch)

    def tap(self, names: list[str]) -> None:
        if names:
            raise CacheError(f"a cache stores no features {names}")

    def metrics_model(self):
        return teacher_model_for_metrics(*self.reference) if self.reference is not None else None

    def to(self, device: torch.device) -> CachedTeacher:
        self.device = torch.device(device)
        return self

    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        index = batch["index"].detach().cpu().numpy().astype(np.int64)
        if self.store.views > 1:
            if "view" not in batch:
                raise CacheError("the batch has no 'view' key; wrap the training set with teacher.train_dataset(...) "
                                 "so it replays the stored views")
            view = batch["view"].detach().cpu().numpy().astype(np.int64)
        else:
            view = np.zeros_like(index)
        records = self.store.read_rows(index * self.store.views + view)
        compact = CompactOutputs.from_records(records, self.store.manifest["mode"], self.store.manifest["num_classes"])
        return ModelOutputs(logits=compact.logits().to(self.device))

    def train_dataset(self, dataset: Dataset) -> Dataset:
        if len(dataset) != self.store.num_samples:
            raise CacheError(f"the training set has {len(dataset)} samples, the cache {self.store.num_samples}")
        return ReplayViews(dataset, self.store) if self.store.manifest["augmented"] else dataset

    def close(self) -> None:
        self.store.close()


def open_cached_teacher(cache_dir: str | Path, config: RunConfig, splits: DataSplits) -> CachedTeacher:
    """Open a complete store that matches this run (teacher weights if the config names them, data, transform)."""
    store = CacheStore.open(cache_dir)
    if store.coverage < 1.0:
        done, total = len(store.manifest["completed_shards"]), store.num_shards
        raise CacheIncompleteError(
            f"cache {str(cache_dir)!r} is partial ({done}/{total} shards); run `kdistill cache build` again with the "
            "same options to resume it")
    check_run(store.manifest, config, splits, cache_dir)
    return CachedTeacher(store)


def teacher_model_for_metrics(config: RunConfig, splits: DataSplits):
    """The model behind a ``kind: cache`` teacher, for a run's final metrics (agreement, teacher accuracy/perplexity).

    Weights: ``teacher.weights`` if the run names them (``open_cached_teacher`` already checked them against the
    store), else the path the manifest records. Returns None, with one warning line, when the manifest predates that
    record, the file is gone or changed, or the model cannot be built: those metrics are then left out, and the run
    still finishes.
    """
    from kdistill.cache.fingerprint import teacher_fingerprint
    from kdistill.errors import KdistillError
    from kdistill.models.base import build_model

    assert config.teacher is not None
    folder = config.teacher.dir

    def skip(reason: str) -> None:
        warnings.warn(f"no teacher agreement in the final metrics: {reason}", stacklevel=3)

    try:
        stored = CacheStore.open(folder).manifest["teacher"]
    except (KdistillError, KeyError) as exc:
        return skip(f"cannot read the manifest of cache {folder!r} ({exc})")
    weights = config.teacher.weights or stored.get("weights")
    if not weights:
        return skip(f"cache {folder!r} does not record its teacher's weights (built by an older kdistill); "
                    "set teacher.weights to get them")
    if not Path(weights).is_file():
        return skip(f"the teacher weights {weights!r} of cache {folder!r} are gone")
    try:
        if not config.teacher.weights and teacher_fingerprint(weights) != stored["weights_sha256"]:
            return skip(f"the teacher weights {weights!r} changed since cache {folder!r} was built")
        model_config = ModelConfig(name=stored["name"], kwargs=stored.get("kwargs") or {}, weights=str(weights))
        return build_model(model_config, splits.input_shape, splits.num_classes, role="teacher")
    except Exception as exc:  # noqa: BLE001  a finished run must not fail over optional metrics
        return skip(f"the teacher of cache {folder!r} could not be rebuilt ({str(exc).splitlines()[0]})")
