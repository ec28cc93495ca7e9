"""Decoupled KD. Zhao, Cui, Song, Qiu, Liang: "Decoupled Knowledge Distillation", CVPR 2022 (arXiv:2203.08679).

KD splits into a target-class term (TCKD: binary target/other KL) and a non-target term (NCKD: KL among the
non-target classes); DKD weighs them separately. Terms ``dkd_tckd`` = w * alpha * TCKD and ``dkd_nckd`` =
w * beta * NCKD, with the warm-up factor w = min((epoch + 1) / warmup_epochs, 1) set by ``set_epoch``.
Paper defaults (CIFAR-100): alpha=1, beta=8 (beta is 1-8 depending on the teacher), T=4, warm-up 20 epochs;
ImageNet: alpha=0.5, beta=0.5, T=1. Needs ``batch["target"]`` (ignore_index -100 is masked).
"""

from __future__ import annotations

import torch

from kdistill.errors import ConfigError
from kdistill.losses.logit import dkd_loss
from kdistill.methods.base import METHODS, Method
from kdistill.outputs import ModelOutputs


@METHODS.register("dkd")
class DecoupledKD(Method):
    name = "dkd"

    def __init__(self, temperature: float = 4.0, alpha: float = 1.0, beta: float = 8.0,
                 warmup_epochs: int = 20) -> None:
        super().__init__()
        if warmup_epochs < 0:
            raise ConfigError(f"distill.method_options.dkd.warmup_epochs must be >= 0, got {warmup_epochs}")
        self.temperature, self.alpha, self.beta, self.warmup_epochs = temperature, alpha, beta, warmup_epochs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def warmup_factor(self) -> float:
        """Ramps linearly to 1 so that the large NCKD weight does not swamp the first epochs (paper, sec. 4)."""
        if self.warmup_epochs == 0:
            return 1.0
        return min((self.epoch + 1) / self.warmup_epochs, 1.0)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        if "target" not in batch:
            raise ConfigError("dkd needs the hard labels (batch['target']); use it on labelled data")
        tckd, nckd = dkd_loss(student.logits, teacher.logits.detach(), batch["target"], self.temperature)
        factor = self.warmup_factor
        return {"dkd_tckd": factor * self.alpha * tckd, "dkd_nckd": factor * self.beta * nckd}
