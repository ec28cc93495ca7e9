"""CachedTeacher: the Teacher interface served from a store instead of a live model."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from kdistill.cache.compact import CompactOutputs
from kdistill.cache.errors import CacheError, CacheIncompleteError
from kdistill.cache.fingerprint import raw_input
from kdistill.cache.manifest import check_run
from kdistill.cache.store import CacheStore
from kdistill.config import ModelConfig, RunConfig
from kdistill.data.base import DataSplits, TensorDataset
from kdistill.methods.base import LOGITS
from kdistill.outputs import ModelOutputs


class ReplayViews(Dataset):
    """The training set as the cache saw it: in each epoch every sample shows one of its stored views.

    Which view: ``epoch_views(epoch)[sample]``, drawn for the whole epoch at once from a generator seeded by (run
    seed, epoch), so the choice does not depend on the batch order, the workers or where a resumed run starts. The
    view's augmentation parameters are read from the store and applied, so the student sees exactly the input the
    stored teacher outputs belong to; the item gets a ``view`` key for lookup.

    ``__getitem__`` is the definition, item by item. The DataLoader calls ``__getitems__`` instead, which builds the
    whole batch with a few tensor operations (one gather of the images, one pad, one indexing for every crop and
    flip) and returns it collated: pass ``collate_fn=ReplayViews.collate_fn`` to the loader.
    """

    def __init__(self, dataset: Dataset, store: CacheStore, seed: int = 0) -> None:
        augment = getattr(dataset, "augment", None)
        if augment is None:
            raise CacheError("the cache stores augmented views but this training set has no augmentation to replay")
        if not isinstance(dataset, TensorDataset):  # as ``build_cache`` requires: batches are gathered from .inputs
            raise CacheError(f"cannot replay the augmentation of a {type(dataset).__name__}; only TensorDataset")
        self.dataset, self.store, self.augment, self.seed = dataset, store, augment, seed
        # (rows, 3) int16: read once, so an item costs no store access (6 bytes per view; 1.3 MB for 55k x 4).
        self.params = torch.from_numpy(store.read_field("params").astype(np.int64))
        # Shared memory: DataLoader workers (persistent ones too) see the epoch the trainer sets in the main process.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._drawn: tuple[int, torch.Tensor] | None = None  # (epoch, its views): drawn once per epoch and process

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch's batches are requested."""
        self._epoch.fill_(epoch)

    def epoch_views(self, epoch: int) -> torch.Tensor:
        """(N,) int64: the view every sample shows in ``epoch``."""
        generator = torch.Generator().manual_seed(_views_seed(self.seed, epoch))
        return torch.randint(self.store.views, (len(self),), generator=generator)

    def _current_views(self) -> torch.Tensor:
        epoch = int(self._epoch)
        if self._drawn is None or self._drawn[0] != epoch:
            self._drawn = (epoch, self.epoch_views(epoch))
        return self._drawn[1]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        view = int(self._current_views()[index])
        params = self.params[index * self.store.views + view].tolist()
        image = self.augment.apply(raw_input(self.dataset, index), tuple(params))
        return {"input": image, "target": self.dataset.targets[index], "index": torch.tensor(index),
                "view": torch.tensor(view)}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """The collated batch of ``indices``: equal, value for value, to ``default_collate`` of the items."""
        index = torch.tensor(indices, dtype=torch.int64)
        view = self._current_views()[index]
        params = self.params[index * self.store.views + view]  # (B, 3)
        images = crop_flip_batch(self.dataset.inputs[index], params, self.augment.padding)
        return {"input": images, "target": self.dataset.targets[index], "index": index, "view": view}

    @staticmethod
    def collate_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``__getitems__`` already returns the collated batch."""
        return batch


def _views_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed per (run seed, epoch), the same on every process, worker and resume."""
    digest = hashlib.sha256(f"{seed}:replayed-views:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def crop_flip_batch(images: torch.Tensor, params: torch.Tensor, padding: int) -> torch.Tensor:
    """``RandomCropFlip(padding).apply`` on a batch (B, C, H, W) with per-image (dy, dx, flip) rows (B, 3), as one
    pad and one indexing: pixel (y, x) of image b is padded[b, :, dy + y, dx + x], or dx + W - 1 - x when flipped
    (the crop is flipped after cropping)."""
    height, width = images.shape[-2:]
    padded = F.pad(images, [padding] * 4) if padding else images
    dy, dx, flip = params.unbind(-1)
    ys = torch.arange(height)
    xs = torch.arange(width)
    rows = dy[:, None] + ys  # (B, H)
    cols = dx[:, None] + torch.where(flip[:, None].bool(), width - 1 - xs, xs)  # (B, W)
    batch = torch.arange(len(images))[:, None, None, None]
    channels = torch.arange(images.shape[1])[None, :, None, None]
    return padded[batch, channels, rows[:, None, :, None], cols[:, None, None, :]]


class CachedTeacher:
    """``teacher: {kind: cache, dir: ...}``. Looks up the stored outputs of (index, view) for each batch; logits
    rebuild the stored distribution: (B, C) for classifiers, (B, T, V) for language models (every position is
    stored). Top-k stores give an approximation (the rest mass spread over the other classes). Only logits are
    stored: no features, and only the training split."""

    provides = frozenset({LOGITS})
    model = None

    def __init__(self, store: CacheStore, reference: tuple[RunConfig, DataSplits] | None = None,
                 seed: int = 0) -> None:
        self.store = store
        self.seed = seed  # the run's: picks the replayed view of each sample in each epoch
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
        return ReplayViews(dataset, self.store, self.seed) if self.store.manifest["augmented"] else dataset

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
    return CachedTeacher(store, seed=config.seed)


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
