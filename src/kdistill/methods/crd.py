"""Contrastive representation distillation. Tian, Krishnan, Isola: "Contrastive Representation Distillation",
ICLR 2020 (arXiv:1910.10699).

Student and teacher penultimate features are embedded (trainable linear heads + L2 norm) into a shared space;
each embedding is contrasted against the other model's momentum memory bank: its own sample (``batch["index"]``)
is the positive, K uniformly drawn samples the negatives, scored with NCE. Term ``crd`` = NCE(student anchor vs
teacher memory) + NCE(teacher anchor vs student memory). Paper defaults: feat_dim=128, nce_k=16384 negatives
(clipped here to the training-set size), nce_t=0.07, momentum 0.5, loss weight 0.8 (with KD 1.0).

The memory banks are buffers of (num_train_samples, feat_dim): they are saved with the method's state. Under
multi-device training each process updates its own banks with its own samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdistill.errors import ConfigError, DataError
from kdistill.losses.contrastive import contrast_scores_from_memory, nce_loss
from kdistill.methods._features import FeatureMethod
from kdistill.methods.base import METHODS, MethodContext
from kdistill.outputs import ModelOutputs


@METHODS.register("crd")
class CRD(FeatureMethod):
    name = "crd"
    auto_pairs = "embedding"
    adapt = None  # the embedding heads map both sides to feat_dim

    def __init__(self, pairs: list[list[str]] | str = "auto", feat_dim: int = 128, nce_k: int = 16384,
                 nce_t: float = 0.07, momentum: float = 0.5) -> None:
        super().__init__(pairs)
        if self._pairs is not None and len(self._pairs) != 1:
            raise ConfigError(f"distill.method_options.crd.pairs: crd contrasts one pair of embeddings, got "
                              f"{len(self._pairs)} pairs")
        self.feat_dim, self.nce_k, self.nce_t, self.momentum = feat_dim, nce_k, nce_t, momentum
        self.num_negatives = 0
        self._index_checked = False

    def build(self, context: MethodContext) -> None:
        num_data = context.num_train_samples
        if num_data < 2:
            raise ConfigError(f"crd needs at least 2 training samples for negatives, got {num_data}")
        self.num_negatives = min(self.nce_k, num_data - 1)
        self.embed_student = nn.Linear(math.prod(self.student_shapes[0]), self.feat_dim)
        self.embed_teacher = nn.Linear(math.prod(self.teacher_shapes[0]), self.feat_dim)
        # Random unit-scale init as in the authors' ContrastMemory: uniform in +-1/sqrt(D/3).
        bound = 1.0 / math.sqrt(self.feat_dim / 3)
        self.register_buffer("memory_student", torch.rand(num_data, self.feat_dim) * 2 * bound - bound)
        self.register_buffer("memory_teacher", torch.rand(num_data, self.feat_dim) * 2 * bound - bound)
        # NCE normalising constants, fixed from the first batch (-1: not set yet), as in the authors' code.
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.register_buffer("z_teacher", torch.tensor(-1.0))
        device = next(context.student.parameters(), torch.empty(0)).device
        self.to(device)

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        if not hasattr(self, "memory_student"):
            raise RuntimeError("crd: memory bank not built; call prepare() before the first step")
        if "index" not in batch:
            raise DataError("crd needs batch['index'] (each sample's position in the training set) for its memory")
        ((f_s, f_t),) = self.paired_features(student, teacher)
        index = batch["index"].reshape(-1).long()
        if f_s.shape[0] == 0:
            return {"crd": f_s.sum() * 0.0}
        self._check_index(index)
        v_s = F.normalize(self.embed_student(f_s.flatten(1)).float(), dim=1)  # (B, D)
        v_t = F.normalize(self.embed_teacher(f_t.flatten(1)).float(), dim=1)
        num_data = self.memory_student.shape[0]
        # Column 0 is the positive (the sample itself); the rest are uniform negatives, as in the paper.
        rows = torch.randint(0, num_data, (index.shape[0], self.num_negatives + 1), device=index.device)
        rows[:, 0] = index
        # Snapshots: backward needs the banks as they were, and _update_memory below changes them in place.
        scores_s = contrast_scores_from_memory(v_s, self.memory_teacher.detach().clone(), rows, self.nce_t)
        scores_t = contrast_scores_from_memory(v_t, self.memory_student.detach().clone(), rows, self.nce_t)
        scores_s = scores_s / self._normaliser(self.z_student, scores_s)
        scores_t = scores_t / self._normaliser(self.z_teacher, scores_t)
        loss = nce_loss(scores_s, num_data) + nce_loss(scores_t, num_data)
        if self.training:
            self._update_memory(index, v_s.detach(), v_t.detach())
        return {"crd": loss}

    def _normaliser(self, z: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Z = mean score * N, estimated on the first batch and then kept (torch.where: no host sync)."""
        z_now = torch.where(z < 0, scores.detach().mean() * self.memory_student.shape[0], z)
        z.copy_(z_now)
        return z_now

    def _check_index(self, index: torch.Tensor) -> None:
        # Checked once: an out-of-range row would be a device-side assert on GPU, far from the cause.
        if self._index_checked:
            return
        if index.min() < 0 or index.max() >= self.memory_student.shape[0]:
            raise DataError(f"crd: batch['index'] has values outside [0, {self.memory_student.shape[0]}) "
                            "(the training-set size given to prepare)")
        self._index_checked = True

    @torch.no_grad()
    def _update_memory(self, index: torch.Tensor, v_s: torch.Tensor, v_t: torch.Tensor) -> None:
        """Momentum update of the rows of this batch, renormalised to unit length."""
        for memory, value in ((self.memory_student, v_s), (self.memory_teacher, v_t)):
            row = memory[index] * self.momentum + value * (1 - self.momentum)
            memory.index_copy_(0, index, F.normalize(row, dim=1).to(memory.dtype))
