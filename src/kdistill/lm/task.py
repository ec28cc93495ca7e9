"""Token maths of the causal language-modelling task (``kdistill.tasks.causal_lm``): shifting, masks, and the
next-token cross-entropy normalised per predicted token.

Per-token normalisation across gradient accumulation: a micro-batch's mean over its own tokens weighs short
micro-batches too much. The trainer instead writes the number of predicted tokens of the whole optimiser step
into every micro-batch (``set_step_tokens``); ``loss`` (and the token KD methods) then divide their *sums* by
that total, so one batch of 8 and four accumulated batches of 2 give the same loss and gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
STEP_TOKENS_KEY = "step_tokens"  # batch key: predicted tokens in the whole optimiser step (scalar tensor)


def shift_for_next_token(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position t predicts token t+1: logits (B, T, V) -> (B, T-1, V), labels (B, T) -> (B, T-1)."""
    return logits[:, :-1, :], labels[:, 1:]


def target_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) labels -> (B, T-1) bool mask of the positions whose next token is a target."""
    return labels[:, 1:] != IGNORE_INDEX


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Predicted (non-masked, shifted) tokens in this micro-batch."""
    return int(target_mask(batch["labels"]).sum())


def set_step_tokens(micro_batches: Sequence[dict[str, torch.Tensor]], total: int | None = None) -> int:
    """Store the step's token count in every micro-batch (pass ``total`` when it was all-reduced across ranks)."""
    total = sum(count_tokens(b) for b in micro_batches) if total is None else total
    for batch in micro_batches:
        batch[STEP_TOKENS_KEY] = torch.tensor(float(total))
    return total


def token_normaliser(batch: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Divisor of a token sum: the step's token count if the trainer set it, else this batch's (min 1)."""
    if STEP_TOKENS_KEY in batch:
        return batch[STEP_TOKENS_KEY].to(device=mask.device, dtype=torch.float32).clamp_min(1.0)
    return mask.sum().to(torch.float32).clamp_min(1.0)


def next_token_ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token cross-entropy over target tokens, number of target tokens), in float32."""
    shifted_logits, shifted_labels = shift_for_next_token(logits, labels)
    ce = F.cross_entropy(shifted_logits.float().reshape(-1, shifted_logits.shape[-1]), shifted_labels.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="sum")
    return ce, (shifted_labels != IGNORE_INDEX).sum()
