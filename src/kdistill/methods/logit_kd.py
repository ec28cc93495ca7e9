"""Logit KD. Hinton, Vinyals, Dean: "Distilling the Knowledge in a Neural Network", 2015 (arXiv:1503.02531).

Term ``kd`` = T^2 * KL(softmax(teacher/T) || softmax(student/T)). Paper defaults: T in 2-20 (4 is common on
small image sets); the hard-label weight alpha is set in ``distill.alpha``.
"""

from __future__ import annotations

import torch

from kdistill.losses.divergence import kd_kl_loss
from kdistill.methods.base import METHODS, Method
from kdistill.outputs import ModelOutputs


@METHODS.register("kd")
class LogitKD(Method):
    name = "kd"

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        return {"kd": kd_kl_loss(student.logits, teacher.logits.detach(), self.temperature)}
