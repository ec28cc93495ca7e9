"""What the deploy steps start from: a finished run folder's student, its teacher, data and task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kdistill.config import ModelConfig, RunConfig
from kdistill.data.base import DataSplits, load_data
from kdistill.deploy.errors import DeployError
from kdistill.tasks import TASKS, Task

# The tensors each task feeds its model, in the order of the exported graph's inputs.
INPUT_NAMES = {"classification": ("input",), "causal-lm": ("input_ids", "attention_mask"),
               "embedding": ("input_ids", "attention_mask")}


@dataclass
class LoadedRun:
    """A finished run, ready to export: the student in eval mode, the data splits and the task."""

    run_dir: Path
    config: RunConfig
    student: nn.Module
    splits: DataSplits
    task: Task

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def input_names(self) -> tuple[str, ...]:
        return input_names_of(self.task.name)


def input_names_of(task_name: str) -> tuple[str, ...]:
    if task_name not in INPUT_NAMES:
        raise DeployError(f"task {task_name!r} cannot be exported yet; exportable tasks: {sorted(INPUT_NAMES)}")
    return INPUT_NAMES[task_name]


def load_run(run_dir: str | Path, splits: DataSplits | None = None) -> LoadedRun:
    """Build the run's student with its final weights (``api.entry_from_run``); ``splits`` saves a reload."""
    from kdistill.api import entry_from_run
    from kdistill.models.base import build_model

    entry, config = entry_from_run(run_dir)
    splits = splits if splits is not None else load_data(config.data)
    student = build_model(entry.model, splits.input_shape, splits.num_classes, role=f"student of {entry.name}")
    return LoadedRun(Path(run_dir), config, student.eval(), splits, TASKS.get(config.task)())


def build_teacher_of(config: RunConfig, splits: DataSplits, teacher_run: str | Path | None = None) -> nn.Module:
    """The teacher a run was distilled from (its config's ``teacher``), or the student of ``teacher_run``."""
    from kdistill.api import entry_from_run
    from kdistill.models.base import build_model

    model_config: ModelConfig | None = config.teacher
    if teacher_run is not None:
        model_config = entry_from_run(teacher_run)[0].model
    if model_config is None or getattr(model_config, "kind", "model") != "model":  # stored outputs: no model
        raise DeployError(f"run {config.name!r} has no live teacher in its config; pass the teacher's run folder "
                          "(--teacher RUN)")
    return build_model(model_config, splits.input_shape, splits.num_classes, role="teacher").eval()


def example_batch(splits: DataSplits, size: int = 2) -> dict[str, torch.Tensor]:
    """A small batch of training samples, the example inputs of the exporters.

    The one place to switch to the task-level example batch once tasks provide it (Core v2).
    """
    samples = [splits.train[i] for i in range(min(size, len(splits.train)))]
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def eval_split(splits: DataSplits):
    """Validation data for parity checks (the test split when the run kept no validation samples)."""
    return splits.val if len(splits.val) else splits.test


class TaskModule(nn.Module):
    """The student as the exported graph sees it: named input tensors in, the task's logits out."""

    def __init__(self, model: nn.Module, task: Task, input_names: tuple[str, ...]):
        super().__init__()
        self.model, self.task, self.input_names = model, task, input_names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.task.logits(self.model, dict(zip(self.input_names, tensors, strict=True)))
