"""Compact storage of teacher logits: ``full`` (every class) or ``topk`` (k classes plus the rest mass).

Both modes store *log-probabilities at T=1* (``log_softmax`` of the logits), not probabilities: softmax is shift
invariant, so ``softmax(log_probs / T) == softmax(logits / T)`` and any temperature can still be applied, while the
likely classes (log-probabilities near 0) get the best float16 precision. Log-probabilities are clamped at
``-LOG_PROB_FLOOR`` so nothing is ``-inf`` (a ``0 * -inf`` in a KL term would be NaN).

``topk`` keeps the k largest log-probabilities, their class indices, and ``rest = logsumexp`` of the other
log-probabilities (the log of the remaining mass, float32). Rebuilt logits put ``rest - log(C - k)`` on every other
class, i.e. the remaining mass is spread *uniformly*:

- at T=1 the kept probabilities and the total rest mass are exact (up to the stored precision);
- at any T the ratios between kept classes are exact;
- at T != 1 the split of the rest is an approximation; for T > 1 the rebuilt rest mass is an upper bound of the
  true one (a uniform split maximises sum p^(1/T) for a fixed sum).

Language models (``positions`` set): one row per sequence holds every position's encoding, i.e. the fields gain a
leading ``(positions,)`` axis and everything above applies per token over the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from kdistill.cache.errors import CacheError

MODES = ("full", "topk")
PRECISIONS = {"float16": "<f2", "float32": "<f4"}
LOG_PROB_FLOOR = 1e4  # e^-10000 is 0 in float32 anyway; fits float16 (max 65504)


def check_mode(mode: str, k: int | None, num_classes: int, precision: str = "float16") -> int | None:
    """Validate the storage options; returns k (None for ``full``)."""
    if mode not in MODES:
        raise CacheError(f"cache mode {mode!r} is unknown; use one of {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise CacheError(f"cache precision {precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
    if mode == "full":
        return None
    if k is None or k < 1:
        raise CacheError(f"--mode topk needs --k >= 1 (got {k})")
    if k > num_classes:
        raise CacheError(f"top-k with k={k} is larger than the {num_classes} classes; use k <= {num_classes} "
                         "or --mode full")
    return k


def row_fields(mode: str, k: int | None, num_classes: int, precision: str, positions: int | None = None
               ) -> list[tuple]:
    """The numpy structured-dtype fields of one stored (sample, view) row, without augmentation parameters.

    ``positions``: tokens per row for language models (each field gets a leading ``(positions,)`` axis).
    """
    value = PRECISIONS[precision]
    lead = () if positions is None else (positions,)
    if mode == "full":
        return [("log_probs", value, (*lead, num_classes))]
    index = "<i2" if num_classes <= np.iinfo(np.int16).max else "<i4"
    return [("values", value, (*lead, k)), ("indices", index, (*lead, k)), ("rest", "<f4", lead)]


def encode(logits: torch.Tensor, mode: str, k: int | None) -> dict[str, np.ndarray]:
    """(B, C) or (B, T, V) logits -> the row fields as float32/int64 arrays (cast to the stored dtypes by the
    caller); the last axis is the class (vocabulary) axis."""
    log_probs = torch.log_softmax(logits.detach().float().cpu(), dim=-1).clamp_min(-LOG_PROB_FLOOR)  # (..., C)
    if mode == "full":
        return {"log_probs": log_probs.numpy()}
    values, indices = log_probs.topk(k, dim=-1)  # (..., k), sorted, largest first
    others = log_probs.scatter(-1, indices, float("-inf"))
    rest = others.logsumexp(dim=-1).clamp_min(-LOG_PROB_FLOOR)  # (...,) log of the remaining mass
    return {"values": values.numpy(), "indices": indices.numpy(), "rest": rest.numpy()}


@dataclass
class CompactOutputs:
    """Stored outputs of a batch, decoded into logits or soft targets."""

    mode: str
    num_classes: int
    # Shapes for classifiers; language models add a position axis after B: (B, T, V), (B, T, k), (B, T).
    log_probs: torch.Tensor | None = None  # (B, C), full mode
    values: torch.Tensor | None = None  # (B, k), top-k log-probabilities
    indices: torch.Tensor | None = None  # (B, k)
    rest: torch.Tensor | None = None  # (B,), log of the remaining mass

    @classmethod
    def from_records(cls, records: np.ndarray, mode: str, num_classes: int) -> CompactOutputs:
        """Wrap rows read from a store (a numpy structured array)."""
        if mode == "full":
            return cls(mode, num_classes, log_probs=torch.from_numpy(records["log_probs"].astype(np.float32)))
        return cls(
            mode,
            num_classes,
            values=torch.from_numpy(records["values"].astype(np.float32)),
            indices=torch.from_numpy(records["indices"].astype(np.int64)),
            rest=torch.from_numpy(records["rest"].astype(np.float32)),
        )

    def logits(self) -> torch.Tensor:
        """(B, C) (or (B, T, V)) float32 logits whose softmax is the stored distribution (rest spread uniformly in
        top-k mode)."""
        if self.mode == "full":
            return self.log_probs.float()
        others = self.num_classes - self.values.shape[-1]
        fill = self.rest - math.log(others) if others else self.rest  # every class is kept when others == 0
        logits = fill.clamp_min(-LOG_PROB_FLOOR).unsqueeze(-1).expand(*fill.shape, self.num_classes).clone()
        return logits.scatter_(-1, self.indices, self.values)

    def soft_targets(self, temperature: float = 1.0) -> torch.Tensor:
        """(B, C) probabilities ``softmax(logits / T)``; see the module docstring for what is exact in top-k mode."""
        return torch.softmax(self.logits() / temperature, dim=-1)
