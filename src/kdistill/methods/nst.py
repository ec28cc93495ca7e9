"""Neuron selectivity transfer. Huang, Wang: "Like What You Like: Knowledge Distill via Neuron Selectivity
Transfer", 2017 (arXiv:1707.01219).

Term ``nst`` = sum over pairs of the squared MMD between the student's and the teacher's channel activation
maps (each L2-normalised over H*W) with the polynomial kernel k(x, y) = (x.y + c)^d. Channel counts may differ;
a resolution mismatch is resized bilinearly. Paper defaults: polynomial kernel d=2, c=0 (the paper's best
kernel); CRD's benchmark code uses a loss weight of 50 (set it as the method weight).
"""

from __future__ import annotations

import torch

from kdistill.losses.feature import nst_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS
from kdistill.outputs import ModelOutputs


@METHODS.register("nst")
class NeuronSelectivityTransfer(FeatureMethod):
    name = "nst"
    auto_pairs = "stages"
    adapt = "spatial"

    def __init__(self, pairs: list[list[str]] | str = "auto", degree: int = 2, coef: float = 0.0) -> None:
        super().__init__(pairs)
        self.degree, self.coef = degree, coef

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        losses = [nst_loss(f_s, f_t, self.degree, self.coef) for f_s, f_t in self.paired_features(student, teacher)]
        return {"nst": torch.stack(losses).sum()}
