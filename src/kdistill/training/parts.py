"""The pieces one optimiser step is built from: the wrapped module, the loss mix per epoch, optimiser and schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kdistill.config import RunConfig
from kdistill.methods.base import Method
from kdistill.outputs import ModelOutputs
from kdistill.taps import FeatureTaps
from kdistill.tasks import Task


class DistillationModule(nn.Module):
    """Student plus the methods' trainable parts; ``forward`` returns the student's logits and the loss terms."""

    def __init__(self, student: nn.Module, methods: dict[str, Method], task: Task) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleDict(methods)
        self.task = task
        taps = sorted({name for m in methods.values() for name in m.student_taps()})
        self.taps = FeatureTaps(student, taps, role="student") if taps else None

    def forward(
        self, batch: dict[str, torch.Tensor], teacher_outputs: ModelOutputs | None, weights: dict[str, float]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.task.logits(self.student, batch)
        student_outputs = ModelOutputs(logits, self.taps.collect() if self.taps else {})
        terms: dict[str, torch.Tensor] = {}
        if teacher_outputs is not None:
            for name, method in self.methods.items():
                if weights.get(name, 0.0) > 0:
                    for term, value in method(student_outputs, teacher_outputs, batch).items():
                        terms[term] = weights[name] * value
        return logits, terms


@dataclass
class Phase:
    """The loss mix for a range of epochs (distill.stages, then the main setting)."""

    alpha: float
    weights: dict[str, float]


def phase_for_epoch(config: RunConfig, epoch: int, distilling: bool) -> Phase:
    if not distilling:
        return Phase(alpha=1.0, weights={})
    start = 0
    for stage in config.distill.stages:
        if epoch < start + stage.epochs:
            alpha = config.distill.alpha if stage.alpha is None else stage.alpha
            return Phase(alpha=alpha, weights=dict(stage.methods))
        start += stage.epochs
    return Phase(alpha=config.distill.alpha, weights=dict(config.distill.methods))


def make_optimizer(config: RunConfig, params) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


def make_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    o, total = config.optim, config.trainer.epochs * steps_per_epoch
    warmup = o.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if o.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if o.schedule == "step":
            return o.gamma ** ((step // steps_per_epoch) // o.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
