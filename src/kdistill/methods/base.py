"""The method interface: student and teacher outputs in, named loss terms out.

A method declares the features it needs (module names to tap in the student and the teacher); the trainer
taps them and passes them in ``ModelOutputs.features``. A method may own trainable parts (shape adapters):
they train with the student, are saved under their own key, and are never exported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from kdistill.errors import ConfigError
from kdistill.outputs import ModelOutputs
from kdistill.registry import Registry


@dataclass
class MethodContext:
    """What a method may look at once, before training, to resolve layer pairs and size its adapters."""

    student: nn.Module
    teacher: nn.Module | None  # None when the teacher is a cache or a black box
    sample_batch: dict[str, torch.Tensor]
    num_classes: int
    num_train_samples: int  # size of the training set (memory banks index it with batch["index"])
    # The teacher's outputs on sample_batch, for sizing adapters when ``teacher`` is None (a cache holds features).
    teacher_sample_outputs: ModelOutputs | None = None


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``forward``."""

    name: ClassVar[str] = ""

    def student_taps(self) -> list[str]:
        """Student module names whose outputs this method needs."""
        return []

    def teacher_taps(self) -> list[str]:
        """Teacher module names whose outputs this method needs."""
        return []

    def prepare(self, context: MethodContext) -> None:
        """Called once before the optimiser is built (resolve ``pairs: auto``, build adapters). Default: nothing."""

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (0-based), for schedules such as DKD's warm-up."""

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


# name -> class; classes are built as ``cls(temperature=..., num_classes=..., **options)``.
METHODS: Registry[type[Method]] = Registry("distillation method")


def build_method(name: str, temperature: float, num_classes: int, options: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method; ``temperature``/``num_classes`` are passed to methods that take them."""
    cls = METHODS.get(name)
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in {"temperature": temperature, "num_classes": num_classes}.items() if k in params}
    options = dict(options or {})
    unknown = [k for k in options if k not in params]
    if unknown:
        known = [p for p in params if p not in ("self", "temperature", "num_classes")]
        raise ConfigError(f"distill.method_options.{name}: unknown option(s) {unknown}; {name} takes {known}")
    try:
        return cls(**kwargs, **options)
    except (TypeError, ValueError) as exc:  # an option of the wrong type (None, a string...): name the method
        raise ConfigError(f"distill.method_options.{name}: {exc}") from None
