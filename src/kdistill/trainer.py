"""Compatibility module: the loop lives in ``kdistill.training`` (loop, launch, sampling, checkpoint, signals)."""

from kdistill.training.launch import launch_fabric, make_fabric, prepare_run_dir_once
from kdistill.training.loop import (
    BatchTransform,
    DistillationModule,
    FitResult,
    Phase,
    Trainer,
    make_optimizer,
    make_scheduler,
    phase_for_epoch,
)

__all__ = ["BatchTransform", "DistillationModule", "FitResult", "Phase", "Trainer", "launch_fabric", "make_fabric",
           "make_optimizer", "make_scheduler", "phase_for_epoch", "prepare_run_dir_once"]
