"""Non-finite loss terms, gradients and weights: found at the step they appear, reported with the term and batch.

``trainer.on_nonfinite: stop`` (default) ends the run there with a ``NonFiniteError``; ``skip`` drops that optimiser
step (no update; the schedule still advances) and counts it in the epoch's ``skipped_steps``. Weights that became
non-finite after an update cannot be skipped: they always stop the run. Nothing non-finite is ever saved as best.
"""

from __future__ import annotations

import torch
from torch import nn

from kdistill.config import RunConfig
from kdistill.errors import NonFiniteError

FULL_PRECISION = ("32-true", "32", "64-true", "64")
_LISTED = 5  # names / sample indices shown in a message


def nonfinite_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    return [f"{name}={float(value.detach())}" for name, value in terms.items() if not torch.isfinite(value).all()]


def nonfinite_parameters(module: nn.Module, gradients: bool) -> list[str]:
    """Names of the parameters (or their gradients) holding NaN/inf; one host synchronisation when all are finite."""
    named = [(n, p.grad if gradients else p) for n, p in module.named_parameters()]
    named = [(n, t) for n, t in named if t is not None]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(finite.all()):
        return []
    return [name for (name, _), ok in zip(named, finite.tolist(), strict=True) if not ok]


def describe_batch(batch: dict[str, torch.Tensor], epoch: int, step: int) -> str:
    """'epoch 2, step 7 (training samples 5, 88, ... of 128; non-finite inputs in samples 88)': data set indices
    when the batch carries them, and the samples whose input tensors hold NaN/inf (the likely cause)."""
    where = f"epoch {epoch + 1}, step {step}"
    index = batch.get("index")
    if index is None or not torch.is_tensor(index):
        return where
    index = index.flatten()
    shown = ", ".join(str(i) for i in index[:_LISTED].tolist())
    more = ", ..." if index.numel() > _LISTED else ""
    bad = torch.zeros(index.numel(), dtype=torch.bool, device=index.device)
    for value in batch.values():
        if torch.is_tensor(value) and value.is_floating_point() and value.dim() > 0 and len(value) == len(bad):
            bad |= ~torch.isfinite(value.reshape(len(bad), -1)).all(1)
    inputs = f"; non-finite inputs in samples {', '.join(str(i) for i in index[bad][:_LISTED].tolist())}"
    return f"{where} (training samples {shown}{more} of {index.numel()}{inputs if bad.any() else ''})"


def advice(config: RunConfig) -> str:
    tips = ["lower optim.lr"]
    if config.trainer.grad_clip is None:
        tips.append("set trainer.grad_clip (e.g. 1.0)")
    if config.trainer.precision not in FULL_PRECISION:
        tips.append("use precision 32-true")
    tips.append("or trainer.on_nonfinite=skip to drop such batches")
    return ", ".join(tips)


def nonfinite_error(kind: str, names: list[str], where: str, config: RunConfig) -> NonFiniteError:
    listed = ", ".join(names[:_LISTED]) + (f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")
    return NonFiniteError(f"non-finite {kind} at {where}: {listed}; {advice(config)}")
