"""Losses run in float32 even inside a mixed-precision region."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Fn = TypeVar("Fn", bound=Callable)


def full_precision(fn: Fn) -> Fn:
    """Disable autocast inside ``fn``: its float32 inputs then stay float32 through matmuls and exp, where bf16
    would lose the small differences that relational and contrastive losses measure."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
