"""The teacher interface: given a batch, the teacher's outputs (logits + tapped features), with no gradient.

Methods never call a teacher; the trainer asks the teacher for outputs and hands them over. So a live model, a
store of its outputs (``cache``), a file of soft labels from a black box (``soft-labels``), an ensemble or a remote
service can all stand behind ``Teacher``. Each kind declares what it ``provides`` (``kdistill.methods.base``:
logits, features, outputs on new inputs, generation); each method declares what it needs; the run checks both once.

A new kind: a module in ``kdistill.teachers`` with a class that has ``provides``, ``from_config`` and the methods of
``Teacher``, a config model with ``kind: Literal[...]`` in ``kdistill.config.TeacherConfig``, and one registration
line in ``kdistill/teachers/__init__.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill.outputs import ModelOutputs
from kdistill.registry import Registry

if TYPE_CHECKING:
    from kdistill.config import RunConfig
    from kdistill.data.base import DataSplits
    from kdistill.tasks.base import Task


class Teacher(Protocol):
    provides: ClassVar[frozenset[str]]  # capabilities, see kdistill.methods.base (LOGITS, FEATURES, ...)
    model: nn.Module | None  # the model it runs (feature taps, ``pairs: auto``, generation); None for stored outputs

    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        """The teacher's outputs for this batch, with no gradient attached."""
        ...

    def probe(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        """Outputs for a probe batch (one training sample, before training): shapes for methods and checks."""
        ...

    def tap(self, names: list[str]) -> None:
        """Collect these module outputs as ``features`` from now on (only a teacher that provides features)."""
        ...

    def to(self, device: torch.device) -> Teacher: ...

    def train_dataset(self, dataset: Dataset) -> Dataset:
        """The training set this teacher can serve (a cache replays its stored augmented views)."""
        ...

    def metrics_model(self) -> nn.Module | None:
        """A model for the final agreement / teacher metrics on the test split (None: a black box)."""
        ...

    def close(self) -> None: ...


class TeacherKind(Protocol):
    """What ``TEACHERS`` holds per ``teacher.kind``: the class and how to build it from the run's config."""

    provides: ClassVar[frozenset[str]]

    @classmethod
    def from_config(cls, config: RunConfig, splits: DataSplits, task: Task) -> Teacher: ...


TEACHERS: Registry[type[TeacherKind]] = Registry("teacher kind")


def build_teacher(config: RunConfig, splits: DataSplits, task: Task) -> Teacher:
    """The teacher of ``config.teacher`` (its ``kind`` picks the class)."""
    assert config.teacher is not None
    return TEACHERS.get(config.teacher.kind).from_config(config, splits, task)


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
