"""DIST. Huang, You, Wang, Qian, Xu: "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022
(arXiv:2205.10536).

Replaces KL with a correlation match that tolerates a different logit scale: inter-class relation (Pearson
correlation of each sample's class probabilities) and intra-class relation (correlation of each class's
probabilities across the batch). Terms ``dist_inter`` = beta * tau^2 * (1 - mean inter correlation) and
``dist_intra`` = gamma * tau^2 * (1 - mean intra correlation). Paper defaults: beta=1, gamma=1, tau=1
(ImageNet; tau=4 on CIFAR-100). tau is this method's own option and does not follow ``distill.temperature``.
"""

from __future__ import annotations

import torch

from kdistill.losses.logit import dist_loss
from kdistill.methods.base import METHODS, Method
from kdistill.outputs import ModelOutputs


@METHODS.register("dist")
class DIST(Method):
    name = "dist"

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, tau: float = 1.0) -> None:
        super().__init__()
        self.beta, self.gamma, self.tau = beta, gamma, tau

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        inter, intra = dist_loss(student.logits, teacher.logits.detach(), self.tau)
        return {"dist_inter": self.beta * inter, "dist_intra": self.gamma * intra}
