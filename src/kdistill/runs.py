"""Run folders: ``<output_dir>/<name>/`` holds config.yaml, metrics.jsonl, checkpoints/ and results.

An existing folder is refused unless the user asks to overwrite it or resume it, so no work is lost by accident.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kdistill.config import RunConfig, check_run_name, dump_config, load_config
from kdistill.errors import CheckpointError, ConfigError, RunFolderError, RunLockedError

CONFIG_FILE = "config.yaml"
MARKER_FILE = ".kdistill-run"  # written when kdistill creates a run folder: only such folders are overwritten
LOCK_FILE = ".kdistill.lock"
CHECKSUMS_FILE = "checksums.json"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = "checkpoints/last"
STUDENT_WEIGHTS = "student.safetensors"
BEST_WEIGHTS = "best_student.safetensors"  # inside the last checkpoint; published to checkpoints/best/


def prepare_run_dir(config: RunConfig, overwrite: bool = False, resume: bool = False) -> Path:
    """Create the run folder (or check it can be resumed), lock it for this process and save the resolved config.

    ``overwrite`` empties only a folder that kdistill marked as a run when it created it (``.kdistill-run``); the
    lock (``.kdistill.lock``, an OS file lock) is held until ``release_run_dir`` or the end of the process.
    """
    if overwrite and resume:
        raise RunFolderError("choose --overwrite or --resume, not both")
    try:
        check_run_name(config.name)  # again here: model_copy(update=...) skips the config's validators
    except ValueError as exc:
        raise RunFolderError(str(exc)) from None
    run_dir = config.run_dir
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise RunFolderError(f"run folder {run_dir} exists as a file or link; choose another --name or --output-dir")
    if resume:
        return _reopen_for_resume(config, run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        _replace_existing(run_dir, overwrite)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    lock_run_dir(run_dir)
    write_json(run_dir / MARKER_FILE, {"run_id": uuid.uuid4().hex, "created": _now(), "host": socket.gethostname()})
    dump_config(config, run_dir / CONFIG_FILE)
    record_trusted_code(config)
    return run_dir


def _reopen_for_resume(config: RunConfig, run_dir: Path) -> Path:
    if run_dir.is_dir():
        lock_run_dir(run_dir)  # before reading anything: another process may be writing it
    if find_checkpoint(run_dir) is None:
        raise RunFolderError(f"cannot resume {run_dir}: no checkpoint there ({LAST_CHECKPOINT}/state.pt is missing); "
                             "start it without --resume")
    check_same_config(config, run_dir)
    return run_dir


def _replace_existing(run_dir: Path, overwrite: bool) -> None:
    """Empty an existing run folder for ``--overwrite``, keeping (and holding) its lock file."""
    check_not_locked(run_dir)  # a folder in use by another process is refused with its holder named
    if not overwrite:
        raise RunFolderError(f"run folder {run_dir} exists; pass --overwrite to replace it, --resume to continue "
                             "it, or choose another --name")
    if not (run_dir / MARKER_FILE).is_file():
        raise RunFolderError(f"refusing to overwrite {run_dir}: it is not a kdistill run folder (no {MARKER_FILE}, "
                             "which kdistill writes when it creates one); delete it yourself or choose another --name")
    if Path.cwd().resolve().is_relative_to(run_dir.resolve()):
        raise RunFolderError(f"refusing to overwrite {run_dir}: it holds the current folder")
    lock_run_dir(run_dir)
    for child in run_dir.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_trusted_code(config: RunConfig) -> None:
    from kdistill.models.trust import trust_config_code

    trust_config_code(config)


# ----- the run lock: one process per run folder -----------------------------------------------------------------
_HELD: dict[str, int] = {}  # resolved run folder -> file descriptor of its locked lock file


def lock_run_dir(run_dir: Path) -> None:
    """Take the run folder's OS lock (``fcntl.flock``, freed by the kernel when the process ends, even on kill -9).

    Re-entrant within a process; another process holding it is a RunLockedError naming pid, host and start time.
    Ranks > 0 of a multi-process launch skip it: their rank-0 parent holds the lock for the whole run.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("RANK", "0") != "0":
        return
    key, path = str(run_dir.resolve()), run_dir / LOCK_FILE
    held = _HELD.get(key)
    if held is not None:
        if path.is_file() and os.fstat(held).st_ino == path.stat().st_ino:
            return
        release_run_dir(run_dir)  # the lock file was replaced (folder deleted by hand): lock the new one
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunLockedError(f"run folder {run_dir} is in use by {_holder(path)}; wait for that run to end or stop "
                             "it, then try again") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}).encode())
    _HELD[key] = fd


def check_not_locked(run_dir: Path) -> None:
    """Raise RunLockedError if another process holds the run folder's lock; changes nothing in the folder."""
    path = run_dir / LOCK_FILE
    if str(run_dir.resolve()) in _HELD or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise RunLockedError(f"run folder {run_dir} is in use by {_holder(path)}; wait for that run to end or stop "
                             "it, then try again") from None
    finally:
        os.close(fd)


def release_run_dir(run_dir: Path) -> None:
    """Free the run folder's lock (a finished run); a no-op when this process does not hold it."""
    fd = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"process {info['pid']} on {info['host']} (started {info['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def check_same_config(config: RunConfig, run_dir: Path) -> None:
    """Resuming with other settings would silently mix two runs; only the epoch count may grow."""
    # Validate the saved config first so that keys added (with defaults) since it was written do not count.
    saved = read_saved_config(run_dir).model_dump(mode="json")
    current = config.model_dump(mode="json")
    saved.get("trainer", {}).pop("epochs", None)
    current.get("trainer", {}).pop("epochs", None)
    differing = sorted(_diff_keys(saved, current))
    if differing:
        raise RunFolderError(f"cannot resume {run_dir} with a different config (differs at: {', '.join(differing)}) "
                             f"than its saved {CONFIG_FILE}")


def read_saved_config(run_dir: Path) -> RunConfig:
    """The config saved in a run folder; a truncated or edited file is a RunFolderError naming it."""
    path = run_dir / CONFIG_FILE
    try:
        return load_config(path)
    except ConfigError as exc:
        raise RunFolderError(f"the saved config {path} is damaged or invalid ({exc}); restore it, or start the run "
                             "again with --overwrite") from None


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [k for key in keys for k in _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop records of epochs after the checkpoint (written before a crash, then redone on resume)."""
    kept = [r for r in read_jsonl(path) if r.get("epoch", -1) <= last_epoch]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint: ``last``, else ``last.tmp`` or ``last.old`` left by a kill mid-swap.

    A checkpoint folder is complete when it holds ``state.pt`` (written last, by rename).
    """
    last = run_dir / LAST_CHECKPOINT
    for candidate in (last, last.with_name("last.tmp"), last.with_name("last.old")):
        if (candidate / "state.pt").is_file():
            return candidate
    return None


def publish_best(run_dir: Path) -> None:
    """Copy the best weights of the last checkpoint to ``checkpoints/best/`` (derived; safe to redo)."""
    checkpoint = find_checkpoint(run_dir)
    if checkpoint is None or not (checkpoint / BEST_WEIGHTS).is_file():
        return
    best = run_dir / "checkpoints/best"
    best.mkdir(parents=True, exist_ok=True)
    tmp = best / (STUDENT_WEIGHTS + ".tmp")
    shutil.copyfile(checkpoint / BEST_WEIGHTS, tmp)
    tmp.replace(best / STUDENT_WEIGHTS)


# ----- checksums of checkpoint folders -----------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """Record the sha256 of every file in a checkpoint folder in ``checksums.json`` (written atomically, last)."""
    folder = Path(folder)
    sums = {path.name: file_sha256(path) for path in sorted(folder.iterdir())
            if path.is_file() and path.name != CHECKSUMS_FILE and not path.name.endswith(".tmp")}
    write_json(folder / CHECKSUMS_FILE, sums)


def verify_checksums(folder: Path) -> None:
    """Refuse a checkpoint folder whose files do not match ``checksums.json`` (truncated, flipped bytes, missing).

    A folder without ``checksums.json`` (written before checksums existed) is accepted as it is.
    """
    folder = Path(folder)
    path = folder / CHECKSUMS_FILE
    if not path.is_file():
        return
    try:
        sums = json.loads(path.read_text())
        assert isinstance(sums, dict)
    except (OSError, ValueError, AssertionError):
        raise CheckpointError(f"checkpoint {folder} is damaged: {path.name} is unreadable") from None
    for name, expected in sums.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {folder} is damaged: {name} is missing")
        if file_sha256(file) != expected:
            raise CheckpointError(f"checkpoint file {file} is damaged (its sha256 differs from the one recorded when "
                                  "it was written); restore it, or start the run again with --overwrite")
