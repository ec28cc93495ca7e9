"""Feature losses between paired intermediate outputs (already adapted to matching shapes where needed).

All functions compute in float32 and return exactly 0 when the batch is empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdistill.losses._precision import full_precision


def _zero_if_empty(*tensors: torch.Tensor) -> torch.Tensor | None:
    if tensors[0].shape[0] == 0:
        return sum(t.float().sum() for t in tensors) * 0.0
    return None


@full_precision
def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets hint (Romero et al. 2015): mean squared error between the adapted student and the teacher feature."""
    if (zero := _zero_if_empty(student_feature, teacher_feature)) is not None:
        return zero
    return F.mse_loss(student_feature.float(), teacher_feature.float())


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention of Zagoruyko & Komodakis (2017): mean_c |A_c|^p, flattened and L2-normalised.

    (B, C, H, W) -> (B, H*W).
    """
    # |.|^p rather than .pow(p): equal for the paper's p=2, and defined for odd p on negative activations.
    attention = feature.float().abs().pow(p).mean(dim=1).flatten(1)
    return F.normalize(attention, dim=1)


@full_precision
def attention_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """AT: mean squared difference of the normalised attention maps (the authors' code; same H, W required)."""
    if (zero := _zero_if_empty(student_feature, teacher_feature)) is not None:
        return zero
    return (attention_map(student_feature, p) - attention_map(teacher_feature, p)).pow(2).mean()


def _poly_kernel_mean(a: torch.Tensor, b: torch.Tensor, degree: int, coef: float) -> torch.Tensor:
    """Mean over samples and channel pairs of (a_i . b_j + c)^d: (B, Ca, HW), (B, Cb, HW) -> scalar."""
    gram = torch.bmm(a, b.transpose(1, 2))  # (B, Ca, Cb)
    return (gram + coef).pow(degree).mean()


@full_precision
def nst_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, degree: int = 2,
             coef: float = 0.0) -> torch.Tensor:
    """Neuron selectivity transfer (Huang & Wang 2017): squared MMD with a polynomial kernel.

    Each channel's activation map, L2-normalised over H*W, is one sample of the layer's distribution; the
    student and teacher distributions are compared with k(x, y) = (x.y + c)^d (paper: d=2, c=0). Channel
    counts may differ; H and W must match.
    """
    if (zero := _zero_if_empty(student_feature, teacher_feature)) is not None:
        return zero
    f_s = F.normalize(student_feature.float().flatten(2), dim=2)  # (B, Cs, HW)
    f_t = F.normalize(teacher_feature.float().flatten(2), dim=2)  # (B, Ct, HW)
    return (_poly_kernel_mean(f_t, f_t, degree, coef) + _poly_kernel_mean(f_s, f_s, degree, coef)
            - 2 * _poly_kernel_mean(f_s, f_t, degree, coef))
