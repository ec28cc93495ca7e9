"""Attention transfer. Zagoruyko, Komodakis: "Paying More Attention to Attention: Improving the Performance of
Convolutional Neural Networks via Attention Transfer", ICLR 2017 (arXiv:1612.03928).

Term ``at`` = sum over pairs of mean((Q_s - Q_t)^2), Q = L2-normalised flattened mean_c |A_c|^p (the authors'
code). Channel counts may differ; a resolution mismatch is resized bilinearly. Paper defaults: p=2, beta=1000
(the code adds beta/2 * sum over pairs), pairs at the end of each residual group (``pairs: auto``). The weight
beta is the method weight in ``distill.methods`` (e.g. ``at: 1000``).
"""

from __future__ import annotations

import torch

from kdistill.losses.feature import attention_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS
from kdistill.outputs import ModelOutputs


@METHODS.register("at")
class AttentionTransfer(FeatureMethod):
    name = "at"
    auto_pairs = "stages"
    adapt = "spatial"

    def __init__(self, pairs: list[list[str]] | str = "auto", p: float = 2.0) -> None:
        super().__init__(pairs)
        self.p = p

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        losses = [attention_loss(f_s, f_t, self.p) for f_s, f_t in self.paired_features(student, teacher)]
        return {"at": torch.stack(losses).sum()}
