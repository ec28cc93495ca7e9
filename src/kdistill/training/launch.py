"""Starting the processes of a run and keeping their file work apart (litgpt's use of Fabric).

``launch_fabric`` builds the Fabric object from ``config.trainer`` and calls ``fabric.launch()``: with
``--devices N`` on one machine Fabric starts N-1 more copies of the same command (each re-runs everything before the
launch: the checks, data and models); under ``torchrun`` or SLURM the launcher has started them and Fabric only joins
them. From then on only rank 0 touches the run folder (``prepare_run_dir_once``, checkpoints, metrics, results);
the others wait at barriers and read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning_fabric as L
from lightning_fabric.loggers import TensorBoardLogger
from lightning_fabric.strategies import FSDPStrategy

from kdistill.config import RunConfig
from kdistill.errors import ConfigError, KdistillError
from kdistill.runs import prepare_run_dir


def make_fabric(config: RunConfig, run_dir: Path, callbacks: Sequence[object] | None = None) -> L.Fabric:
    """Fabric for ``config.trainer``; settings Fabric refuses (no such device, too many devices...) are a
    ConfigError naming them. ``callbacks`` receive the loop's events (``kdistill.training.callbacks``)."""
    t = config.trainer
    logger = TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version="")
    try:
        return L.Fabric(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                        precision=t.precision, loggers=[logger], callbacks=list(callbacks or []))
    except (ValueError, RuntimeError, TypeError) as exc:  # Fabric's MisconfigurationException is a ValueError
        settings = (f"accelerator={t.accelerator}, devices={t.devices}, num_nodes={t.num_nodes}, "
                    f"strategy={t.strategy}, precision={t.precision}")
        raise ConfigError(f"cannot use trainer settings {settings}: {str(exc).strip().splitlines()[0]}") from None


def launch_fabric(config: RunConfig, callbacks: Sequence[object] | None = None) -> L.Fabric:
    """``make_fabric`` + ``fabric.launch()``: after this call every process of the run executes the code below it."""
    fabric = make_fabric(config, config.run_dir, callbacks)
    try:
        fabric.launch()
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot start {fabric.world_size} processes: {str(exc).strip().splitlines()[0]}") from None
    return fabric


def prepare_run_dir_once(fabric: L.Fabric, config: RunConfig, overwrite: bool = False, resume: bool = False) -> Path:
    """Rank 0 creates (or checks) the run folder; the others wait and raise the same error if it failed."""
    error: KdistillError | None = None
    if fabric.is_global_zero:
        try:
            prepare_run_dir(config, overwrite=overwrite, resume=resume)
        except KdistillError as exc:
            error = exc
    if fabric.world_size > 1:
        error = fabric.broadcast(error)
    if error is not None:
        raise error
    return config.run_dir


def place_teacher(fabric: L.Fabric, teacher) -> None:
    """On the student's device. With FSDP a live teacher's module is sharded like the student (``setup_module``:
    no optimiser, stays frozen in eval mode); DDP never wraps it (there is nothing to synchronise)."""
    module = getattr(teacher, "module", None)
    if isinstance(fabric.strategy, FSDPStrategy) and module is not None:
        teacher.module = fabric.setup_module(module)
        teacher.module.eval()
    else:
        teacher.to(fabric.device)
