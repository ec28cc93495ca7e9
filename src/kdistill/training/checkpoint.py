"""Checkpoints: one ``state`` through ``fabric.save``/``fabric.load``, plus the student's weights as safetensors.

``checkpoints/last/`` holds ``state.pt`` (module with the methods' parts and buffers such as CRD's memory bank,
optimiser, scheduler, data position, running epoch totals, best-so-far, every process's RNG states, the batch
transform's state) and ``student.safetensors`` / ``best_student.safetensors`` (read by eval, export and
``checkpoints/best``). It is built in ``last.tmp`` (``state.pt`` renamed into place last marks it complete) and then
swapped in, by rank 0 only; ``state.pt`` is read back with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning_fabric as L
import numpy as np
import torch
import torch.distributed as dist

from kdistill.errors import KdistillError, RunFolderError
from kdistill.models.weights import save_weights
from kdistill.runs import (
    BEST_WEIGHTS,
    LAST_CHECKPOINT,
    STUDENT_WEIGHTS,
    find_checkpoint,
    publish_best,
    verify_checksums,
    write_checksums,
)


@dataclass
class EpochTotals:
    """Running sums of the epoch so far (kept across a mid-epoch resume so its metrics line is the same)."""

    sums: dict[str, float] = field(default_factory=dict)
    correct: float = 0.0
    seen: int = 0  # predictions (items, or tokens): what the loss means are over
    skipped_steps: int = 0
    elapsed_s: float = 0.0
    scored: int = 0  # predictions with a label: what accuracy is over (fewer than seen on a transfer set)


@dataclass
class Position:
    """Where training continues: ``epoch`` (0-based) after ``step`` optimiser steps of it. ``epoch`` is also the
    number of finished (validated) epochs."""

    epoch: int = 0
    step: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)
    best_epoch: int | None = None  # 1-based, as in metrics.jsonl and summary.json
    best_val_accuracy: float = float("nan")


def capture_rng() -> dict:
    """Every random state a step may draw from: torch CPU, each CUDA device, Python, NumPy."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def gather_rng(fabric: L.Fabric) -> list[dict]:
    """Each process's RNG states, in rank order (every process calls this)."""
    mine = capture_rng()
    if fabric.world_size == 1:
        return [mine]
    states: list = [None] * fabric.world_size
    dist.all_gather_object(states, mine)
    return states


def save_checkpoint(fabric: L.Fabric, run_dir: Path, state: dict, module, improved: bool) -> Path:
    """Write ``checkpoints/last`` (every process calls this; rank 0 writes). ``improved``: these weights are the
    best so far (copied to best_student), else the previous best is kept (hard link)."""
    last = run_dir / LAST_CHECKPOINT
    tmp, old = last.with_name("last.tmp"), last.with_name("last.old")
    if fabric.is_global_zero:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(module.student, tmp / STUDENT_WEIGHTS)
        if improved:
            shutil.copyfile(tmp / STUDENT_WEIGHTS, tmp / BEST_WEIGHTS)
        elif (last / BEST_WEIGHTS).is_file():
            os.link(last / BEST_WEIGHTS, tmp / BEST_WEIGHTS)  # unchanged: a hard link costs no copy
    fabric.barrier()
    fabric.save(tmp / "state.tmp", state)  # rank 0 writes, then a barrier
    if fabric.is_global_zero:
        (tmp / "state.tmp").replace(tmp / "state.pt")
        write_checksums(tmp)  # verified on resume: a damaged file is refused by name
        if last.exists():
            shutil.rmtree(old, ignore_errors=True)
            last.rename(old)
        tmp.rename(last)
        shutil.rmtree(old, ignore_errors=True)
        publish_best(run_dir)
    fabric.barrier()
    return last


def promote_last_checkpoint(fabric: L.Fabric, run_dir: Path) -> Path:
    """The checkpoint to resume from, as ``checkpoints/last`` (a kill mid-swap can leave it as last.tmp/old)."""
    error = None
    if fabric.is_global_zero:
        found = find_checkpoint(run_dir)
        if found is None:
            error = f"no complete checkpoint in {run_dir / 'checkpoints'} to resume from"
        elif found != run_dir / LAST_CHECKPOINT:
            shutil.rmtree(run_dir / LAST_CHECKPOINT, ignore_errors=True)
            found.rename(run_dir / LAST_CHECKPOINT)
        if found is not None:
            try:
                verify_checksums(run_dir / LAST_CHECKPOINT)  # before anything is read or published from it
            except KdistillError as exc:
                error = str(exc)
        if error is None:
            publish_best(run_dir)
    if fabric.world_size > 1:
        error = fabric.broadcast(error)
    if error:
        raise RunFolderError(error)
    return run_dir / LAST_CHECKPOINT


def position_state(position: Position) -> dict:
    return asdict(position)


def position_from_state(saved: dict) -> Position:
    totals = EpochTotals(**saved.pop("totals"))
    return Position(totals=totals, **saved)
