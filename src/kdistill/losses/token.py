"""Token-level divergences for language-model distillation (pure functions, float32, masked).

Inputs are logits (B, T, V) of the student and the teacher on the same tokens and the labels (B, T) of the batch
(-100: no target). Position t predicts token t+1, so the distributions at positions 0..T-2 are compared where
``labels[:, 1:] != -100``. Every function returns the masked *sum* divided by ``normaliser`` (default: the number of
compared tokens), and exactly 0 when everything is masked. Divergences are taken at temperature T on both sides,
without the T^2 factor (language-model KD papers use T = 1).

p is the teacher distribution, q the student's:
* forward KL(p || q) (Hinton et al. 2015 applied per token; Kim & Rush 2016 "word-level KD");
* reverse KL(q || p): mode seeking; MiniLLM, Gu et al., ICLR 2024 (arXiv:2306.08543);
* generalised JSD_beta = beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q: GKD, Agarwal et al.,
  ICLR 2024 (arXiv:2306.13649);
* total variation 0.5 sum |p - q|: Wen et al. 2023, "f-Divergence Minimization for Sequence-Level KD"
  (ACL 2023, arXiv:2307.15190);
* skew KL(p || alpha p + (1 - alpha) q) and skew reverse KL(q || (1 - alpha) p + alpha q): DistiLLM, Ko et al.,
  ICML 2024 (arXiv:2402.03898).
"""

from __future__ import annotations

import math

import torch

IGNORE_INDEX = -100


def _shifted(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probs (B, T-1, V) of student and teacher at temperature T, and the (B, T-1) target mask."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ; token losses need one vocabulary (see uld)")
    log_q = torch.log_softmax(student_logits[:, :-1].float() / temperature, dim=-1)
    log_p = torch.log_softmax(teacher_logits[:, :-1].float() / temperature, dim=-1)
    return log_q, log_p, labels[:, 1:] != IGNORE_INDEX


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) over the last dimension; 0 * log 0 = 0. (B, T, V) -> (B, T)."""
    a = log_a.exp()
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def _log_mix(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(w a + (1 - w) b), stably."""
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def masked_token_sum(per_token: torch.Tensor, mask: torch.Tensor, normaliser: torch.Tensor | float | None = None
                     ) -> torch.Tensor:
    """sum(per_token[mask]) / normaliser (default: mask count, at least 1). (B, T) -> scalar; 0 if all masked."""
    total = torch.where(mask, per_token, torch.zeros_like(per_token)).sum()
    if normaliser is None:
        normaliser = mask.sum().to(torch.float32).clamp_min(1.0)
    return total / normaliser


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
               temperature: float = 1.0, normaliser: torch.Tensor | float | None = None) -> torch.Tensor:
    log_q, log_p, mask = _shifted(student_logits, teacher_logits, labels, temperature)
    return masked_token_sum(_kl(log_p, log_q), mask, normaliser)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
               temperature: float = 1.0, normaliser: torch.Tensor | float | None = None) -> torch.Tensor:
    log_q, log_p, mask = _shifted(student_logits, teacher_logits, labels, temperature)
    return masked_token_sum(_kl(log_q, log_p), mask, normaliser)


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    beta: float = 0.5, temperature: float = 1.0, normaliser: torch.Tensor | float | None = None
                    ) -> torch.Tensor:
    """GKD's JSD(beta) for 0 < beta < 1 (beta = 0.5: the symmetric Jensen-Shannon divergence)."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd beta must be in (0, 1), got {beta}; use token_fkl / token_rkl for the limits")
    log_q, log_p, mask = _shifted(student_logits, teacher_logits, labels, temperature)
    log_m = _log_mix(log_p, log_q, beta)  # (B, T-1, V)
    per_token = beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)
    return masked_token_sum(per_token, mask, normaliser)


def total_variation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    temperature: float = 1.0, normaliser: torch.Tensor | float | None = None) -> torch.Tensor:
    log_q, log_p, mask = _shifted(student_logits, teacher_logits, labels, temperature)
    return masked_token_sum(0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1), mask, normaliser)


def skew_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.1,
            reverse: bool = False, temperature: float = 1.0, normaliser: torch.Tensor | float | None = None
            ) -> torch.Tensor:
    """DistiLLM's skew KL(p || alpha p + (1-alpha) q), or with ``reverse`` KL(q || (1-alpha) p + alpha q)."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"skew alpha must be in [0, 1), got {alpha} (DistiLLM uses 0.1)")
    log_q, log_p, mask = _shifted(student_logits, teacher_logits, labels, temperature)
    if reverse:
        per_token = _kl(log_q, _log_mix(log_q, log_p, alpha) if alpha > 0 else log_p)
    else:
        per_token = _kl(log_p, _log_mix(log_p, log_q, alpha) if alpha > 0 else log_q)
    return masked_token_sum(per_token, mask, normaliser)


def uld_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, student_labels: torch.Tensor,
             teacher_labels: torch.Tensor, temperature: float = 1.0,
             normaliser: torch.Tensor | float | None = None) -> torch.Tensor:
    """Universal Logit Distillation (Boizard et al. 2024, arXiv:2402.12030): works across tokenizers.

    Each side's probabilities are sorted in decreasing order and zero-padded to the larger vocabulary; the loss is
    the L1 distance between the sorted vectors (a closed form of the Wasserstein distance under the paper's uniform
    cost). The two sequences' target positions are aligned in order: the k-th student target token is compared
    with the k-th teacher target token, for k below the smaller count (per sample).
    Student logits (B, Ts, Vs), teacher logits (B, Tt, Vt); labels (B, Ts) and (B, Tt).
    """
    q = torch.softmax(student_logits[:, :-1].float() / temperature, dim=-1).sort(-1, descending=True).values
    p = torch.softmax(teacher_logits[:, :-1].float() / temperature, dim=-1).sort(-1, descending=True).values
    size = max(q.shape[-1], p.shape[-1])
    q = torch.nn.functional.pad(q, (0, size - q.shape[-1]))  # (B, Ts-1, V)
    p = torch.nn.functional.pad(p, (0, size - p.shape[-1]))  # (B, Tt-1, V)
    q_rows, q_mask = _compact(q, student_labels[:, 1:] != IGNORE_INDEX)
    p_rows, p_mask = _compact(p, teacher_labels[:, 1:] != IGNORE_INDEX)
    length = min(q_rows.shape[1], p_rows.shape[1])
    mask = q_mask[:, :length] & p_mask[:, :length]  # (B, K)
    per_token = (q_rows[:, :length] - p_rows[:, :length]).abs().sum(-1)  # (B, K)
    return masked_token_sum(per_token, mask, normaliser)


def _compact(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the masked-in rows of each sample to the front, in order. (B, T, V), (B, T) -> (B, K, V), (B, K)."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # targets first, order kept
    gathered = values.gather(1, order.unsqueeze(-1).expand_as(values))
    count = int(mask.sum(1).max()) if mask.numel() else 0
    return gathered[:, :count], mask.gather(1, order)[:, :count]
