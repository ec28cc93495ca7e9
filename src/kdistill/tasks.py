"""A task says how a model is called on a batch, what the hard-label loss is, and what 'correct' means.

Classification is built in; language modelling adds its own task, so one training loop serves both.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from kdistill.data.transfer import masked_task_loss
from kdistill.models.base import logits_of
from kdistill.registry import Registry


class Task:
    name: ClassVar[str] = ""

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The hard-label (task) loss, a scalar."""
        raise NotImplementedError

    def correct(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(number of correct predictions, number of predictions) for accuracy."""
        raise NotImplementedError

    def agreement(self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, int]:
        """(predictions where student and teacher pick the same class, number of predictions)."""
        raise NotImplementedError

    def prepare_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> float:
        """Called before the micro-batches of one optimiser step; returns the divisor of each micro-batch loss.

        Default: losses are per-sample means, so divide by the number of micro-batches.
        """
        return float(len(micro_batches))

    def log_scale(self, batch: dict[str, torch.Tensor], count: int) -> float:
        """Factor turning this micro-batch's loss into its own per-prediction mean, for logging."""
        return 1.0


TASKS: Registry[type[Task]] = Registry("task")


@TASKS.register("classification")
class ClassificationTask(Task):
    name = "classification"

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return logits_of(model(batch["input"]))

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_task_loss(logits, batch)  # labelled items only; mixed labels under mixup/cutmix

    def correct(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return (logits.argmax(-1) == batch["target"]).sum(), int(batch["target"].numel())

    def agreement(self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, int]:
        return (logits.argmax(-1) == teacher_logits.argmax(-1)).sum(), int(logits.shape[0])


from kdistill.lm import embedding_task as _embedding_task  # noqa: E402,F401  (registers embedding)
from kdistill.lm import task as _lm_task  # noqa: E402,F401  (registers causal-lm; TASKS exists by now)
