"""FitNets hints. Romero, Ballas, Kahou, Chassang, Gatta, Bengio: "FitNets: Hints for Thin Deep Nets", ICLR 2015
(arXiv:1412.6550).

Term ``fitnet`` = mean over pairs of MSE(adapter(student feature), teacher feature); the adapter (the paper's
regressor) is a 1x1 conv + BN for channel mismatches, bilinear resize for resolution, linear for vectors.
Paper defaults: one hint at the middle of the networks (``pairs: auto`` picks the middle stage), trained in two
stages: hints first, then KD with the soft-target weight annealed (use ``distill.stages``). Common single-stage
weight (CRD's benchmark code): 100.
"""

from __future__ import annotations

import torch

from kdistill.losses.feature import hint_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS
from kdistill.outputs import ModelOutputs


@METHODS.register("fitnet")
class FitNet(FeatureMethod):
    name = "fitnet"
    auto_pairs = "middle"
    adapt = "full"

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        losses = [hint_loss(f_s, f_t) for f_s, f_t in self.paired_features(student, teacher)]
        return {"fitnet": torch.stack(losses).mean()}
