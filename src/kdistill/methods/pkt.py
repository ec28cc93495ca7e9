"""Probabilistic knowledge transfer. Passalis, Tefas: "Learning Deep Representations with Probabilistic
Knowledge Transfer", ECCV 2018 (arXiv:1803.10837).

Each model's features define, through a cosine-similarity kernel, the conditional probability that sample j is
a neighbour of sample i; term ``pkt`` = KL(teacher || student) of these distributions, summed over pairs.
Features of any shape and width (no adapter). Paper defaults: cosine kernel on the penultimate embeddings
(``pairs: auto``); CRD's benchmark uses a weight of 30000.
"""

from __future__ import annotations

import torch

from kdistill.losses.relational import pkt_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS
from kdistill.outputs import ModelOutputs


@METHODS.register("pkt")
class ProbabilisticKT(FeatureMethod):
    name = "pkt"
    auto_pairs = "embedding"
    adapt = None
    needs_teacher_shapes = False

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        losses = [pkt_loss(f_s, f_t) for f_s, f_t in self.paired_features(student, teacher)]
        return {"pkt": torch.stack(losses).sum()}
