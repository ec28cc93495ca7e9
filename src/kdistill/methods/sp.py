"""Similarity-preserving KD. Tung, Mori: "Similarity-Preserving Knowledge Distillation", ICCV 2019
(arXiv:1907.09682).

Term ``sp`` = sum over pairs of ||G_t - G_s||_F^2 / B^2, G the row-normalised B x B Gram matrix of the
flattened features: the student must make the same samples similar as the teacher. Features of any shape and
width (no adapter). Paper defaults: gamma=3000 (CIFAR-10; set it as the method weight), one pair at the last
stage before pooling (``pairs: auto``).
"""

from __future__ import annotations

import torch

from kdistill.losses.relational import sp_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS
from kdistill.outputs import ModelOutputs


@METHODS.register("sp")
class SimilarityPreserving(FeatureMethod):
    name = "sp"
    auto_pairs = "last"
    adapt = None
    needs_teacher_shapes = False

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        losses = [sp_loss(f_s, f_t) for f_s, f_t in self.paired_features(student, teacher)]
        return {"sp": torch.stack(losses).sum()}
