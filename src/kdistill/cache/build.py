"""Run the teacher once over the training split and store its outputs (resumable, deterministic).

Rows are produced in a fixed order (sample-major, ``views`` rows per sample); batches never cross a shard boundary,
so a resumed build runs exactly the batches an uninterrupted one would and ends with byte-identical shards (on the
same device and library versions). Augmentation parameters come from a generator seeded per (sample, view).

Language models (``task: causal-lm``): one row per training sequence holding the teacher's distribution at *every*
position, padding and prompt positions included. Storing all ``max_length`` positions keeps rows fixed-size (a
row is found by its sample index, no offset table) and makes the cached logits equal the live teacher's everywhere;
the cost is the padding share of the data (the losses mask those positions anyway). ``cache_info`` reports the
bytes per stored token and per target token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from kdistill.cache.compact import check_mode, encode
from kdistill.cache.errors import CacheError, CacheMismatchError
from kdistill.cache.fingerprint import raw_input
from kdistill.cache.manifest import check_same_store, new_manifest
from kdistill.cache.store import MANIFEST, CacheStore, shard_name
from kdistill.config import ModelConfig, RunConfig, typed_teacher
from kdistill.data.base import RandomCropFlip, TensorDataset, load_data

DEFAULT_AUGMENTED_VIEWS = 4


def default_cache_dir(config: RunConfig) -> Path:
    return Path(config.output_dir) / "cache" / config.name


def view_seed(seed: int, sample: int, view: int) -> int:
    """Seed of the generator that draws the augmentation of one (sample, view): independent of order and workers."""
    digest = hashlib.sha256(f"{seed}:{sample}:{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class ViewRows(Dataset):
    """Row ``sample * views + view`` -> the augmented input the teacher sees, and the parameters that made it."""

    def __init__(self, dataset: Dataset, augment: RandomCropFlip | None, views: int, seed: int) -> None:
        self.dataset, self.augment, self.views, self.seed = dataset, augment, views, seed

    def __len__(self) -> int:
        return len(self.dataset) * self.views

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        sample, view = divmod(row, self.views)
        image = raw_input(self.dataset, sample)
        item = {"row": torch.tensor(row)}
        if self.augment is not None:
            params = self.augment.sample(torch.Generator().manual_seed(view_seed(self.seed, sample, view)))
            image = self.augment.apply(image, params)
            item["params"] = torch.tensor(params, dtype=torch.int16)
        item["input"] = image
        return item


class TokenRows(Dataset):
    """Row ``sample`` of a token data set -> its ids and attention mask (one row per sequence, one view)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        item = self.dataset[row]
        return {"row": torch.tensor(row), "input_ids": item["input_ids"], "attention_mask": item["attention_mask"]}


def _require_teacher(config: RunConfig) -> ModelConfig:
    teacher = typed_teacher(config.teacher)
    if teacher is not None and teacher.kind != "model":
        raise CacheError(f"the teacher is of kind {teacher.kind!r}, not a model; give the model that should fill the "
                         "cache")
    if teacher is None or not teacher.weights:
        raise CacheError("building a teacher cache needs teacher.name and teacher.weights in the config")
    from kdistill.tasks import TASKS

    if not TASKS.get(config.task).cacheable:
        supported = [name for name in TASKS.names() if TASKS.get(name).cacheable]
        raise CacheError(f"teacher caches support tasks {', '.join(supported)}, not {config.task!r}")
    return teacher


def _augment_of(dataset: Dataset) -> RandomCropFlip | None:
    augment = getattr(dataset, "augment", None)
    if augment is None or not augment.active:
        return None
    if not isinstance(dataset, TensorDataset):
        raise CacheError(f"cannot replay the augmentation of a {type(dataset).__name__}; only TensorDataset")
    return augment


def _device(config: RunConfig, device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    accelerator = config.trainer.accelerator
    if accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if accelerator == "mps" else "cpu")


def _open_or_create(root: Path, wanted: dict) -> CacheStore:
    """Resume the store in ``root`` (same options required) or start an empty one."""
    if (root / MANIFEST).is_file():
        store = CacheStore.open(root)
        check_same_store(store.manifest, wanted, root)
        store.remove_temporaries()
        # A shard listed but deleted or damaged since (checked against its sha256) is built again.
        damaged = [s for s in store.manifest["completed_shards"] if store.shard_problem(s)]
        if damaged:
            store.manifest["completed_shards"] = [s for s in store.manifest["completed_shards"] if s not in damaged]
            for shard in damaged:
                (root / shard_name(shard)).unlink(missing_ok=True)
            store.write_manifest()
        store.repaired = damaged
        return store
    if root.exists() and any(not p.name.endswith(".tmp") for p in root.iterdir()):
        raise CacheError(f"{str(root)!r} exists and is not a teacher cache (no {MANIFEST}); pick an empty --dir")
    root.mkdir(parents=True, exist_ok=True)
    store = CacheStore(root, wanted)
    store.remove_temporaries()
    store.write_manifest()
    return store


def _shard_batches(store: CacheStore, shards: list[int], batch_size: int) -> list[list[int]]:
    """Row batches in store order that never cross a shard boundary."""
    batches = []
    for shard in shards:
        samples = store.shard_samples(shard)
        rows = range(samples.start * store.views, samples.stop * store.views)
        batches += [list(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    return batches


def _records(store: CacheStore, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> np.ndarray:
    manifest = store.manifest
    records = np.empty(len(logits), dtype=store.dtype)
    for name, values in encode(logits, manifest["mode"], manifest["k"]).items():
        records[name] = values
    if manifest["augmented"]:
        records["params"] = batch["params"].numpy()
    return records


def build_cache(
    config: RunConfig,
    cache_dir: str | Path,
    *,
    views: int | None = None,
    mode: str = "full",
    k: int | None = None,
    shard_size: int = 1024,
    num_workers: int | None = None,
    precision: str = "float16",
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Fill (or resume) the cache in ``cache_dir`` with the outputs of ``config.teacher`` on the training split.

    Args:
        config: The run; ``teacher`` needs weights, ``data`` picks the split and transform.
        cache_dir: Store folder; an existing store is resumed if it was made with the same options.
        views: Stored augmented views per sample (default 4); 1 when the training transform is deterministic.
        mode: ``full`` (all log-probabilities) or ``topk`` (k of them plus the rest mass).
        k: Classes kept in ``topk`` mode.
        shard_size: Samples per shard file.
        num_workers: DataLoader workers (default ``config.trainer.num_workers``).
        precision: Stored precision of the log-probabilities, ``float16`` or ``float32``.
        seed: Seed of the augmentation parameters.
        device: ``auto`` follows ``config.trainer.accelerator``.
        progress: Called with (complete shards, total shards) after each shard.

    Returns:
        ``cache_info`` of the finished store.
    """
    teacher_config = _require_teacher(config)
    splits = load_data(config.data)
    if config.data.function_matching:  # one row per (sample, epoch) of the run's own mixed batches
        return build_function_matching_cache(config, splits, Path(cache_dir), mode=mode, k=k, precision=precision,
                                             shard_size=shard_size, device=device, progress=progress)
    augment = _augment_of(splits.train)
    if views is not None and views < 1:
        raise CacheError(f"--views must be >= 1, got {views}")
    views = (views or DEFAULT_AUGMENTED_VIEWS) if augment is not None else 1
    k = check_mode(mode, k, splits.num_classes, precision)
    if shard_size < 1:
        raise CacheError(f"--shard-size must be >= 1, got {shard_size}")
    wanted = new_manifest(config, splits, mode=mode, k=k, precision=precision, views=views,
                          augmented=augment is not None, shard_size=shard_size, seed=seed,
                          batch_size=config.trainer.eval_batch_size)
    root = Path(cache_dir)
    store = _open_or_create(root, wanted)
    todo = [s for s in range(store.num_shards) if s not in set(store.manifest["completed_shards"])]
    if todo:
        from kdistill.tasks import TASKS
        from kdistill.teachers import build_teacher

        target = _device(config, device)
        task = TASKS.get(config.task)()
        typed = config.model_copy(update={"teacher": teacher_config})
        teacher = build_teacher(typed, splits, task).to(target)  # the run's Teacher interface, kind model
        if task.per_position:  # one row per sequence
            rows: Dataset = TokenRows(splits.train)
        else:
            rows = ViewRows(splits.train, augment, views, store.manifest["seed"])
        batches = _shard_batches(store, todo, store.manifest["batch_size"])
        workers = config.trainer.num_workers if num_workers is None else num_workers
        loader = DataLoader(rows, batch_sampler=batches, num_workers=workers)
        _fill(store, teacher, loader, target, progress)
        teacher.close()
    store.close()
    info = cache_info(root)
    info["rebuilt_shards"] = store.repaired
    return info


def _fill(store: CacheStore, teacher, loader: DataLoader, device: torch.device, progress) -> None:
    per_shard = store.manifest["shard_size"] * store.views
    pending: list[np.ndarray] = []
    for batch in loader:
        shard = int(batch["row"][0]) // per_shard
        inputs = {key: value.to(device) for key, value in batch.items() if key not in ("row", "params")}
        logits = teacher.outputs(inputs).logits  # (B, C), or (B, T, V) for language models
        pending.append(_records(store, logits, batch))
        if sum(len(p) for p in pending) == len(store.shard_samples(shard)) * store.views:
            store.write_shard(shard, np.concatenate(pending))
            pending = []
            if progress is not None:
                progress(len(store.manifest["completed_shards"]), store.num_shards)


def build_function_matching_cache(config: RunConfig, splits, root: Path, *, mode: str, k: int | None, precision: str,
                                  shard_size: int, device: str, progress) -> dict:
    """Fill a store with the teacher's outputs on every batch a run with these options will train on.

    Function matching mixes samples within a batch, so the teacher's output depends on the batch: the build replays
    the run's order (``training_order``), crops and mixing (``BatchMixer``, seeded by ``config.seed``) for
    ``trainer.epochs`` epochs. Row ``sample * epochs + epoch`` ("view" = epoch) holds the teacher on that sample's
    mixed input in that epoch; ``mixing.npz`` records partners, lambdas and crop parameters, which a cached run
    checks batch by batch.
    """
    from kdistill.data.mixing import BatchMixer, MixRecord, check_function_matching
    from kdistill.models import build_model
    from kdistill.tasks import TASKS
    from kdistill.teacher import LiveTeacher

    if config.task != "classification":
        raise CacheError("function-matching caches (data.mixup_alpha/cutmix_alpha/random_resized_crop_scale) are for "
                         f"task classification, not {config.task!r}")
    check_function_matching(config.data, splits)
    epochs, train = config.trainer.epochs, splits.train
    k = check_mode(mode, k, splits.num_classes, precision)
    wanted = new_manifest(config, splits, mode=mode, k=k, precision=precision, views=epochs, augmented=False,
                          shard_size=shard_size, seed=config.seed, batch_size=config.trainer.batch_size)
    wanted["function_matching"] = function_matching_options(config)
    store = _open_or_create(root, wanted)
    if store.manifest.get("function_matching") != wanted["function_matching"]:
        raise CacheError(f"{str(root)!r} holds another kind of cache; use another --dir or delete it")
    if len(store.manifest["completed_shards"]) < store.num_shards:
        target = _device(config, device)
        model = build_model(config.teacher, splits.input_shape, splits.num_classes, role="teacher")
        teacher = LiveTeacher(model, task=TASKS.get(config.task)()).to(target)
        mixer, record = BatchMixer(config.data, splits.num_classes, config.seed), MixRecord.empty(epochs, len(train))
        rows = np.empty(len(train) * epochs, dtype=store.dtype)
        for epoch in range(epochs):
            for step, indices in enumerate(training_order(len(train), config.trainer.batch_size, config.seed, epoch)):
                batch = {key: value.to(target) for key, value in default_collate([train[i] for i in indices]).items()}
                logits = teacher.outputs(mixer(batch, epoch, step, record)).logits  # (B, C)
                rows[np.asarray(indices) * epochs + epoch] = _records(store, logits, {})
        teacher.close()
        _save_record(root / MIXING_RECORD, record)
        for shard in range(store.num_shards):
            samples = store.shard_samples(shard)
            store.write_shard(shard, rows[samples.start * epochs : samples.stop * epochs])
            if progress is not None:
                progress(shard + 1, store.num_shards)
    store.close()
    return cache_info(root)


MIXING_RECORD = "mixing.npz"


def function_matching_options(config: RunConfig) -> dict:
    """What fixes a function-matching cache's batches: the run's seed, batch size, epochs and augmentation."""
    keys = ("mixup_alpha", "cutmix_alpha", "mix_prob", "random_resized_crop_scale", "augment_crop_padding",
            "augment_hflip")
    return {"seed": config.seed, "batch_size": config.trainer.batch_size, "epochs": config.trainer.epochs,
            **{key: getattr(config.data, key) for key in keys}}


def training_order(count: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The index batches of one training epoch (0-based), drawn by the loop's own sampler (one process); a cached
    run checks them against the record."""
    from kdistill.training.sampling import ShardSampler

    sampler = ShardSampler(count, seed)
    sampler.start_epoch(epoch)
    order = list(sampler)
    return [order[start:start + batch_size] for start in range(0, count, batch_size)]


def _save_record(path: Path, record) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, partner=record.partner, lam=record.lam, params=record.params)
    tmp.replace(path)


def read_mixing_record(cache_dir: str | Path, config: RunConfig):
    """The MixRecord of a function-matching cache, after checking it was built for this run's options."""
    from kdistill.data.mixing import MixRecord

    store = CacheStore.open(cache_dir)
    stored, wanted = store.manifest.get("function_matching"), function_matching_options(config)
    if stored is None:
        raise CacheMismatchError("transform", f"cache {str(cache_dir)!r} was built without function matching; "
                                 "build it with this run's data.mixup_alpha/cutmix_alpha/random_resized_crop_scale")
    changed = [f"{key}: cache {stored.get(key)!r}, run {value!r}" for key, value in wanted.items()
               if key != "epochs" and stored.get(key) != value]
    if stored["epochs"] < wanted["epochs"]:
        changed.append(f"epochs: cache {stored['epochs']}, run {wanted['epochs']} (needs at most the cache's)")
    if changed:
        raise CacheMismatchError("transform", f"cache {str(cache_dir)!r} holds other batches than this run's "
                                 f"({'; '.join(changed)}); rebuild it with the run's options")
    with np.load(Path(cache_dir) / MIXING_RECORD) as arrays:
        return MixRecord(arrays["partner"], arrays["lam"], arrays["params"])


def cache_info(cache_dir: str | Path) -> dict:
    """The manifest plus size on disk, bytes per sample and coverage (complete shards / total).

    Language-model stores add ``bytes_per_token`` (per stored position) and, when every shard is there,
    ``bytes_per_target_token`` (size of the shards over the target tokens they serve, i.e. padding counted).
    The ``disk_bytes_per_*`` keys are measured instead: ``size_on_disk`` over the samples (tokens, target tokens)
    of the complete shards, so file headers and the manifest count; absent while no shard is complete.
    """
    store = CacheStore.open(cache_dir)
    manifest = store.manifest
    damaged = {shard: problem for shard in manifest["completed_shards"] if (problem := store.shard_problem(shard))}
    good = [shard for shard in manifest["completed_shards"] if shard not in damaged]
    info = {
        "path": str(Path(cache_dir)),
        "manifest": manifest,
        "size_on_disk": store.size_on_disk(),
        "bytes_per_sample": store.bytes_per_sample,
        "complete_shards": len(good),  # verified against their checksums: a damaged shard is not coverage
        "num_shards": store.num_shards,
        "coverage": len(good) / store.num_shards,
        "damaged_shards": damaged,
    }
    if store.positions:
        info["bytes_per_token"] = store.bytes_per_sample / store.positions
        targets = manifest.get("target_tokens")
        if targets:
            info["bytes_per_target_token"] = store.bytes_per_sample * store.num_samples / targets
    # Measured: the folder's size on disk (shards with their headers, manifest) over what the complete shards hold.
    stored = sum(len(store.shard_samples(shard)) for shard in good)
    if stored:
        info["disk_bytes_per_sample"] = info["size_on_disk"] / stored
        if store.positions:
            info["disk_bytes_per_token"] = info["size_on_disk"] / (stored * store.positions)
            if manifest.get("target_tokens") and stored == store.num_samples:
                info["disk_bytes_per_target_token"] = info["size_on_disk"] / manifest["target_tokens"]
    return info
