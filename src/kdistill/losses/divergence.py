"""Divergences between teacher and student distributions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al. (2015): T^2 * KL(softmax(teacher/T) || softmax(student/T)), mean over the batch.

    The T^2 factor keeps the soft-target gradient on the same scale as the hard-label gradient when T changes.
    Computed in float32. Logits are (B, C); leading dimensions beyond the batch are flattened into it.
    """
    student = student_logits.float().reshape(-1, student_logits.shape[-1]) / temperature
    teacher = teacher_logits.float().reshape(-1, teacher_logits.shape[-1]) / temperature
    if student.shape[0] == 0:
        return student.sum() * 0.0
    kl = F.kl_div(
        F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1), log_target=True, reduction="batchmean"
    )
    return kl * temperature**2
