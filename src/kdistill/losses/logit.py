"""Logit losses beyond plain KD: decoupled KD, DIST's correlation losses, logit standardisation.

All functions take logits of shape (B, C) (leading dimensions are flattened into the batch), compute in
float32 and return exactly 0 when the batch is empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdistill.losses._precision import full_precision


def _flatten_logits(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().reshape(-1, logits.shape[-1])  # (N, C)


@full_precision
def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float,
             ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al. 2022): the target-class part (TCKD) and the non-target part (NCKD) of KD.

    TCKD = T^2 * KL([p_t, 1 - p_t]_teacher || [p_t, 1 - p_t]_student) on the binary target/other split;
    NCKD = T^2 * KL over the non-target classes only, each distribution renormalised without the target class.
    Both are means over the samples whose target is not ``ignore_index``.

    Returns:
        ``(tckd, nckd)``, unweighted.
    """
    student = _flatten_logits(student_logits) / temperature  # (N, C)
    teacher = _flatten_logits(teacher_logits) / temperature
    target = target.reshape(-1)
    keep = target != ignore_index
    student, teacher, target = student[keep], teacher[keep], target[keep]
    if student.shape[0] == 0:
        zero = student.sum() * 0.0
        return zero, zero
    gt_mask = F.one_hot(target, student.shape[-1]).bool()  # (N, C)
    tckd = _binary_kl(student, teacher, gt_mask) * temperature**2
    if student.shape[-1] < 2:
        return tckd, student.sum() * 0.0  # no non-target class to distil
    # Masking the target class with -inf renormalises the softmax over the other classes (mdistiller uses -1000).
    student_other = F.log_softmax(student.masked_fill(gt_mask, float("-inf")), dim=-1)
    teacher_other = F.log_softmax(teacher.masked_fill(gt_mask, float("-inf")), dim=-1)
    # The target column is -inf in both; zero it so that exp(-inf) * (-inf - -inf) does not give NaN.
    student_other = student_other.masked_fill(gt_mask, 0.0)
    teacher_other = teacher_other.masked_fill(gt_mask, 0.0)
    nckd_per_sample = (teacher_other.exp() * (teacher_other - student_other)).sum(-1)  # (N,)
    return tckd, nckd_per_sample.mean() * temperature**2


def _binary_kl(student: torch.Tensor, teacher: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
    """Mean KL between the teacher's and the student's (target, not target) probabilities, from scaled logits."""
    def target_vs_rest(logits: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=-1)  # (N, C)
        log_target = log_probs.masked_fill(~gt_mask, float("-inf")).logsumexp(-1)  # (N,)
        log_rest = log_probs.masked_fill(gt_mask, float("-inf")).logsumexp(-1)
        return torch.stack([log_target, log_rest], dim=-1)  # (N, 2) log-probabilities

    log_s, log_t = target_vs_rest(student), target_vs_rest(teacher)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation between matching rows of a and b: (N, D), (N, D) -> (N,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@full_precision
def dist_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """DIST (Huang et al. 2022): 1 - Pearson correlation of the softmax outputs, across classes and across samples.

    Returns:
        ``(inter, intra)``: inter-class relation (per sample, over classes) and intra-class relation (per class,
        over the batch), each scaled by tau^2.
    """
    student = _flatten_logits(student_logits)
    teacher = _flatten_logits(teacher_logits)
    if student.shape[0] == 0:
        zero = student.sum() * 0.0
        return zero, zero
    y_s = F.softmax(student / tau, dim=1)  # (N, C)
    y_t = F.softmax(teacher / tau, dim=1)
    inter = 1.0 - _pearson_rows(y_s, y_t).mean()
    intra = 1.0 - _pearson_rows(y_s.t(), y_t.t()).mean()  # columns: each class across the batch
    return inter * tau**2, intra * tau**2


@full_precision
def standardize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row of logits (Sun et al. 2024): (z - mean) / (std + eps), std unbiased as in their code."""
    logits = logits.float()
    if logits.numel() == 0:
        return logits
    if logits.shape[-1] < 2:
        return logits - logits.mean(dim=-1, keepdim=True)  # a single class has no spread to divide by
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + eps)
