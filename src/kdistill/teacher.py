"""Teachers behind one interface: given a batch, return the teacher's outputs (logits + tapped features).

Methods never call a teacher; the trainer asks the teacher for outputs and hands them over. So a live model,
a cache of stored outputs, an ensemble or a remote service can all stand behind ``Teacher``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill.outputs import ModelOutputs
from kdistill.taps import FeatureTaps
from kdistill.tasks import ClassificationTask, Task


class Teacher(Protocol):
    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        """The teacher's outputs for this batch, with no gradient attached."""
        ...

    def to(self, device: torch.device) -> Teacher: ...

    def train_dataset(self, dataset: Dataset) -> Dataset:
        """The training set this teacher can serve (a cache replays its stored augmented views)."""
        ...

    def close(self) -> None: ...


TEACHER_KEY_PREFIX = "teacher_"  # batch keys in the teacher's own tokens (e.g. ``teacher_input_ids`` for ``uld``)


def teacher_view(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch as the teacher sees it: each ``teacher_<key>`` entry replaces ``<key>`` (a teacher with another
    tokenizer reads its own ``teacher_input_ids``/``teacher_attention_mask``); unchanged when there are none."""
    keys = [key for key in batch if key.startswith(TEACHER_KEY_PREFIX)]
    if not keys:
        return batch
    view = dict(batch)
    for key in keys:
        view[key.removeprefix(TEACHER_KEY_PREFIX)] = batch[key]
    if "input" in view and "input_ids" in view:
        view["input"] = view["input_ids"]
    return view


class FrozenModule(nn.Module):
    """Wraps the teacher so that ``.train()`` on a parent can never switch it out of eval mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenModule:
        return super().train(False)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


class LiveTeacher:
    """A frozen model run on every batch under ``torch.no_grad`` (not inference_mode: its tensors would break
    feature losses that save inputs for backward). It reads the batch's ``teacher_*`` keys when present."""

    def __init__(self, model: nn.Module, feature_names: list[str] | None = None, task: Task | None = None) -> None:
        self.module = FrozenModule(model)
        self.task = task or ClassificationTask()
        self.taps = FeatureTaps(model, feature_names or [], role="teacher") if feature_names else None

    def to(self, device: torch.device) -> LiveTeacher:
        self.module.to(device)
        return self

    @torch.no_grad()
    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        logits = self.task.logits(self.module, teacher_view(batch))
        features = self.taps.collect() if self.taps else {}
        return ModelOutputs(logits=logits.float(), features=features)

    def train_dataset(self, dataset: Dataset) -> Dataset:
        return dataset

    def close(self) -> None:
        if self.taps:
            self.taps.remove()
