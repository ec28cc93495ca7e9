"""The training loop and what it needs: launch, sampling, checkpoints, signals, non-finite checks, callbacks."""

from kdistill.training.callbacks import EVENTS, Callback
from kdistill.training.launch import launch_fabric, make_fabric, place_teacher, prepare_run_dir_once
from kdistill.training.loop import DistillationModule, FitResult, Phase, Trainer, phase_for_epoch

__all__ = ["EVENTS", "Callback", "DistillationModule", "FitResult", "Phase", "Trainer", "launch_fabric",
           "make_fabric", "phase_for_epoch", "place_teacher", "prepare_run_dir_once"]
