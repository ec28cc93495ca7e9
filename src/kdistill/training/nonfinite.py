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
    found = []
    for name, parameter in module.named_parameters():
        tensor = parameter.grad if gradients else parameter
        if tensor is not None and not torch.isfinite(tensor).all():
            found.append(name)
    return found


def describe_batch(batch: dict[str, torch.Tensor], epoch: int, step: int) -> str:
    """'epoch 2, step 7 (samples 5, 88, 1021, ... of 128)': the data set indices when the batch carries them."""
    where = f"epoch {epoch + 1}, step {step}"
    index = batch.get("index")
    if index is None or not torch.is_tensor(index):
        return where
    shown = ", ".join(str(i) for i in index.flatten()[:_LISTED].tolist())
    more = ", ..." if index.numel() > _LISTED else ""
    return f"{where} (training samples {shown}{more} of {index.numel()})"


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
