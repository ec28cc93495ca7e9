"""Contrastive losses (CRD, Tian et al. 2020): NCE between an anchor embedding and samples from a memory bank."""

from __future__ import annotations

import torch

from kdistill.losses._precision import full_precision


@full_precision
def contrast_scores(anchor: torch.Tensor, memory_rows: torch.Tensor, nce_t: float) -> torch.Tensor:
    """exp(<anchor, memory> / T) for each anchor against its K+1 memory rows (row 0 is the positive).

    Args:
        anchor: (B, D) L2-normalised embeddings.
        memory_rows: (B, K+1, D) memory entries, detached.
        nce_t: temperature.

    Returns:
        (B, K+1) unnormalised scores.
    """
    return torch.exp(torch.bmm(memory_rows, anchor.float().unsqueeze(2)).squeeze(2) / nce_t)


@full_precision
def contrast_scores_from_memory(anchor: torch.Tensor, memory: torch.Tensor, rows: torch.Tensor, nce_t: float
                                ) -> torch.Tensor:
    """``contrast_scores(anchor, memory[rows], nce_t)`` without materialising the (B, K+1, D) gather.

    With CRD's K = 16384 negatives the gathered rows are ~1 GB per batch of 128; when K is a sizeable share of the
    bank it is far cheaper to score the anchor against every memory row (one (B, D) x (D, N) matmul) and pick each
    sample's K+1 columns. Same values (up to float summation order), gradient through ``anchor`` only.

    Args:
        anchor: (B, D) L2-normalised embeddings.
        memory: (N, D) memory bank, detached.
        rows: (B, K+1) row indices into the bank (column 0: the positive).
        nce_t: temperature.
    """
    if rows.shape[1] * 4 < memory.shape[0]:  # few rows per anchor: the gather is the smaller computation
        return contrast_scores(anchor, memory[rows], nce_t)
    every_row = anchor.float() @ memory.float().t()  # (B, N)
    return torch.exp(every_row.gather(1, rows) / nce_t)


@full_precision
def nce_loss(scores: torch.Tensor, num_data: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE loss on normalised scores (B, K+1), positive in column 0, noise distribution uniform 1/N.

    loss = -(sum_b log h(pos_b) + sum_{b,k} log(1 - h(neg_bk))) / B with h(x) = x / (x + K/N).
    """
    batch = scores.shape[0]
    if batch == 0:
        return scores.sum() * 0.0
    negatives = scores.shape[1] - 1
    noise = negatives / float(num_data)  # K * P_n
    positive = scores[:, 0]
    log_d1 = torch.log(positive / (positive + noise + eps))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / batch
