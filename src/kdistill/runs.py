"""Run folders: ``<output_dir>/<name>/`` holds config.yaml, metrics.jsonl, checkpoints/ and results.

An existing folder is refused unless the user asks to overwrite it or resume it, so no work is lost by accident.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from kdistill.config import RunConfig, dump_config
from kdistill.errors import RunFolderError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LAST_CHECKPOINT = "checkpoints/last"
STUDENT_WEIGHTS = "student.safetensors"
BEST_WEIGHTS = "best_student.safetensors"  # inside the last checkpoint; published to checkpoints/best/


def prepare_run_dir(config: RunConfig, overwrite: bool = False, resume: bool = False) -> Path:
    """Create the run folder (or check it can be resumed) and save the resolved config."""
    if overwrite and resume:
        raise RunFolderError("choose --overwrite or --resume, not both")
    run_dir = config.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} exists as a file; choose another --name or --output-dir")
    exists = run_dir.exists() and any(run_dir.iterdir())
    if resume:
        if find_checkpoint(run_dir) is None:
            raise RunFolderError(f"cannot resume {run_dir}: no checkpoint there (start it without --resume)")
        check_same_config(config, run_dir)
        return run_dir
    if exists:
        if not overwrite:
            raise RunFolderError(f"run folder {run_dir} exists; pass --overwrite to replace it, --resume to continue "
                                 "it, or choose another --name")
        if not (run_dir / CONFIG_FILE).is_file():
            raise RunFolderError(f"refusing to overwrite {run_dir}: it is not a kdistill run folder (no {CONFIG_FILE})")
        shutil.rmtree(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create run folder {run_dir}: {exc.strerror}") from None
    dump_config(config, run_dir / CONFIG_FILE)
    return run_dir


def check_same_config(config: RunConfig, run_dir: Path) -> None:
    """Resuming with other settings would silently mix two runs; only the epoch count may grow."""
    # Validate the saved config first so that keys added (with defaults) since it was written do not count.
    saved = RunConfig.model_validate(yaml.safe_load((run_dir / CONFIG_FILE).read_text())).model_dump(mode="json")
    current = config.model_dump(mode="json")
    saved.get("trainer", {}).pop("epochs", None)
    current.get("trainer", {}).pop("epochs", None)
    differing = sorted(_diff_keys(saved, current))
    if differing:
        raise RunFolderError(f"cannot resume {run_dir} with a different config (differs at: {', '.join(differing)})")


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
