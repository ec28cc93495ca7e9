"""Logit-standardised KD. Sun, Ren, Li, Wang, Cao: "Logit Standardization in Knowledge Distillation",
CVPR 2024 (arXiv:2403.01427).

Z-scores the student's and the teacher's logits per sample before the usual KD, so the student matches the
teacher's logit relations rather than their range. Term ``lskd`` = T^2 * KL(softmax(z(t)/T) || softmax(z(s)/T)).
Paper defaults: the pre-process has no hyper-parameter besides T; the authors' CIFAR-100 KD runs use T=2 with a
KD weight of 9 and a CE weight of 0.1 (set ``distill.temperature`` and the method weight accordingly).
"""

from __future__ import annotations

import torch

from kdistill.losses.divergence import kd_kl_loss
from kdistill.losses.logit import standardize_logits
from kdistill.methods.base import METHODS, Method
from kdistill.outputs import ModelOutputs


@METHODS.register("lskd")
class LogitStandardizedKD(Method):
    name = "lskd"

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        student_z, teacher_z = standardize_logits(student.logits), standardize_logits(teacher.logits.detach())
        return {"lskd": kd_kl_loss(student_z, teacher_z, self.temperature)}
