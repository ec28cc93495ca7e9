"""Relational losses: compare how samples of a batch relate to each other, not the features themselves.

Features of any shape are flattened to (B, D); student and teacher widths may differ. All functions compute
in float32 and return exactly 0 when the batch is empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdistill.losses._precision import full_precision


def _flat(feature: torch.Tensor) -> torch.Tensor:
    feature = feature.float()
    return feature.flatten(1) if feature.dim() > 1 else feature.unsqueeze(1)  # (B, D); flatten(1) allows B = 0


@full_precision
def sp_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori 2019): ||G_t - G_s||_F^2 / B^2 on row-normalised Gram matrices."""
    f_s, f_t = _flat(student_feature), _flat(teacher_feature)
    batch = f_s.shape[0]
    if batch == 0:
        return f_s.sum() * 0.0
    g_s = F.normalize(f_s @ f_s.t(), dim=1)  # (B, B)
    g_t = F.normalize(f_t @ f_t.t(), dim=1)
    return (g_t - g_s).pow(2).sum() / batch**2


def _pairwise_distance(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances (B, D) -> (B, B), with an exact zero diagonal."""
    square = e.pow(2).sum(dim=1)
    dist = (square.unsqueeze(1) + square.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return dist * (1 - torch.eye(e.shape[0], device=e.device, dtype=e.dtype))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    dist = _pairwise_distance(e)
    positive = dist[dist > 0]
    # A batch of one (or of identical samples) has no distances to average; leave them as zeros.
    return dist / positive.mean() if positive.numel() else dist


@full_precision
def rkd_distance_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """RKD-D (Park et al. 2019): Huber loss between mean-normalised pairwise distance matrices."""
    f_s, f_t = _flat(student_feature), _flat(teacher_feature)
    if f_s.shape[0] == 0:
        return f_s.sum() * 0.0
    with torch.no_grad():
        d_t = _normalised_distances(f_t)
    return F.smooth_l1_loss(_normalised_distances(f_s), d_t)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at every j between i and k: (B, D) -> (B*B*B,), entry [j, i, k] = <e_i - e_j, e_k - e_j>."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # (B, B, D): [j, i] = e_i - e_j
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


@full_precision
def rkd_angle_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """RKD-A (Park et al. 2019): Huber loss between the cosines of the angles formed by every sample triplet."""
    f_s, f_t = _flat(student_feature), _flat(teacher_feature)
    if f_s.shape[0] == 0:
        return f_s.sum() * 0.0
    with torch.no_grad():
        a_t = _angles(f_t)
    return F.smooth_l1_loss(_angles(f_s), a_t)


def _cosine_affinity(e: torch.Tensor, eps: float) -> torch.Tensor:
    """Row-stochastic matrix of (cos + 1) / 2 similarities: (B, D) -> (B, B)."""
    e = e / (e.norm(dim=1, keepdim=True) + eps)
    similarity = (e @ e.t() + 1.0) / 2.0
    return similarity / similarity.sum(dim=1, keepdim=True)


@full_precision
def pkt_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """PKT (Passalis & Tefas 2018): KL between the teacher's and student's conditional probability of each pair,
    from cosine-similarity kernels, averaged over all B*B entries (the authors' code)."""
    f_s, f_t = _flat(student_feature), _flat(teacher_feature)
    if f_s.shape[0] == 0:
        return f_s.sum() * 0.0
    p_s = _cosine_affinity(f_s, eps)
    p_t = _cosine_affinity(f_t, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()
