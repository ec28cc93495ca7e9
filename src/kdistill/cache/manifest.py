"""What a store's manifest records, and the checks that tie a store to the current run."""

from __future__ import annotations

from pathlib import Path

from kdistill.cache.errors import CacheMismatchError
from kdistill.cache.fingerprint import compare_data, data_fingerprint, teacher_fingerprint, transform_config
from kdistill.cache.store import FORMAT_VERSION
from kdistill.config import RunConfig
from kdistill.data.base import DataSplits
from kdistill.tasks import TASKS

# Options that fix the bytes of a store: resuming with other values would mix two layouts in one store.
# (batch_size is not checked: a resumed build reuses the stored one.)
PRECISION_KEYS = ("precision", "mode", "k")
LAYOUT_KEYS = ("views", "augmented", "num_samples", "num_classes", "positions", "shard_size", "num_shards", "seed")


def new_manifest(config: RunConfig, splits: DataSplits, *, mode: str, k: int | None, precision: str, views: int,
                 augmented: bool, shard_size: int, seed: int, batch_size: int) -> dict:
    """The manifest of an empty store for this run (no timestamps: a resumed build must end byte-identical)."""
    num_samples = len(splits.train)
    # Language models: one row per sequence with every position (classifier manifests keep their old keys).
    positions = {}
    if TASKS.get(config.task).per_position:
        labels = splits.train.labels  # (N, T); predicted tokens are the shifted non-ignored labels
        positions = {"positions": splits.input_shape[0], "target_tokens": int((labels[:, 1:] != -100).sum())}
    return {
        "format_version": FORMAT_VERSION,
        # ``weights`` (absolute path) lets a run trained from the store rebuild the teacher for its final metrics;
        # stores made before it was recorded simply skip those metrics.
        "teacher": {"name": config.teacher.name, "kwargs": config.teacher.kwargs,
                    "weights": str(Path(config.teacher.weights).resolve()),
                    "weights_sha256": teacher_fingerprint(config.teacher.weights)},
        "data": data_fingerprint(config.data, splits),
        "transform": transform_config(config.data),
        "task": config.task,
        "precision": precision,
        "mode": mode,
        "k": k,
        "views": views,
        "augmented": augmented,
        "num_samples": num_samples,
        "num_classes": splits.num_classes,
        **positions,
        "shard_size": shard_size,
        "num_shards": -(-num_samples // shard_size),
        "seed": seed,
        "batch_size": batch_size,
        "completed_shards": [],
    }


def _where(root) -> str:
    return f"cache {str(root)!r}"


def check_run(manifest: dict, config: RunConfig, splits: DataSplits, root) -> None:
    """Refuse a store made for another task, teacher (when the config names weights), data set or transform."""
    stored_task = manifest.get("task", "classification")
    if stored_task != config.task:
        raise CacheMismatchError("task", f"{_where(root)} holds {stored_task!r} outputs, this run's task is "
                                 f"{config.task!r}")
    teacher = config.teacher
    if teacher is not None and teacher.weights:
        current = teacher_fingerprint(teacher.weights)
        if current != manifest["teacher"]["weights_sha256"]:
            raise CacheMismatchError(
                "teacher", f"{_where(root)} was built from other teacher weights than {teacher.weights!r} "
                f"({manifest['teacher']['weights_sha256'][:19]}... vs {current[:19]}...); rebuild it or drop "
                "teacher.weights")
    transform = transform_config(config.data)
    changed = {key: (manifest["transform"].get(key), value) for key, value in transform.items()
               if manifest["transform"].get(key) != value}
    if changed:
        listing = ", ".join(f"data.{key}: cache {old!r}, run {new!r}" for key, (old, new) in changed.items())
        raise CacheMismatchError("transform", f"{_where(root)} was built with another transform ({listing})")
    problem = compare_data(manifest["data"], data_fingerprint(config.data, splits))
    if problem:
        raise CacheMismatchError("data", f"{_where(root)} was built on other data: {problem}")


def check_same_store(stored: dict, wanted: dict, root) -> None:
    """Refuse to resume a build into a store made with other options (so one store never mixes two layouts)."""
    if stored["teacher"]["weights_sha256"] != wanted["teacher"]["weights_sha256"]:
        raise CacheMismatchError("teacher", f"{_where(root)} holds outputs of other teacher weights; use another "
                                 "--dir or delete it")
    if stored["transform"] != wanted["transform"]:
        raise CacheMismatchError("transform", f"{_where(root)} was built with transform {stored['transform']}, "
                                 f"this run uses {wanted['transform']}; use another --dir or delete it")
    problem = compare_data(stored["data"], wanted["data"])
    if problem:
        raise CacheMismatchError("data", f"{_where(root)} was built on other data: {problem}")
    for part, keys in (("precision", PRECISION_KEYS), ("layout", LAYOUT_KEYS)):
        changed = [f"{key}: cache {stored.get(key)!r}, asked {wanted.get(key)!r}" for key in keys
                   if stored.get(key) != wanted.get(key)]
        if changed:
            raise CacheMismatchError(part, f"{_where(root)} was built with other {part} options "
                                     f"({'; '.join(changed)}); resume with the same options, or use another --dir")
