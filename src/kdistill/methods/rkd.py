"""Relational KD. Park, Kim, Lu, Cho: "Relational Knowledge Distillation", CVPR 2019 (arXiv:1904.05068).

The student matches the teacher's structure of the batch: pairwise distances (normalised by their mean) and
the angles formed by sample triplets, both through a Huber loss. Terms ``rkd_distance`` = distance_weight *
RKD-D and ``rkd_angle`` = angle_weight * RKD-A, summed over pairs. Paper defaults: distance weight 25, angle
weight 50, on the penultimate embeddings (``pairs: auto``). Features of any shape and width (no adapter).
"""

from __future__ import annotations

import torch

from kdistill.losses.relational import rkd_angle_loss, rkd_distance_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS
from kdistill.outputs import ModelOutputs


@METHODS.register("rkd")
class RelationalKD(FeatureMethod):
    name = "rkd"
    auto_pairs = "embedding"
    adapt = None
    needs_teacher_shapes = False

    def __init__(self, pairs: list[list[str]] | str = "auto", distance_weight: float = 25.0,
                 angle_weight: float = 50.0) -> None:
        super().__init__(pairs)
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        features = self.paired_features(student, teacher)
        distance = torch.stack([rkd_distance_loss(f_s, f_t) for f_s, f_t in features]).sum()
        angle = torch.stack([rkd_angle_loss(f_s, f_t) for f_s, f_t in features]).sum()
        return {"rkd_distance": self.distance_weight * distance, "rkd_angle": self.angle_weight * angle}
