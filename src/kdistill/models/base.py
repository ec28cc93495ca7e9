"""The model interface: a source builds an ``nn.Module`` for a given input shape and class count.

``ModelConfig.name`` picks the source: ``mlp``/``cnn``/``resnet`` (built-in), ``timm:<name>``,
``torchvision:<name>`` or ``file:<path.py>:<factory>``. Input channels and class count are adapted
automatically; weights load from safetensors (default) or a torch checkpoint read with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kdistill.config import ModelConfig
from kdistill.errors import ModelError
from kdistill.registry import Registry


@dataclass(frozen=True)
class ModelRequest:
    """What a source must build: the part after ``source:``, factory kwargs and the data's shapes."""

    argument: str | None
    kwargs: dict
    input_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28) or (64,)
    num_classes: int
    pretrained: bool

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]


ModelSource = Callable[[ModelRequest], nn.Module]
MODEL_SOURCES: Registry[ModelSource] = Registry("model source")


def build_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int, role: str = "model") -> nn.Module:
    """Build the model, load its weights if given, and check it maps the data's inputs to ``num_classes`` logits."""
    from kdistill.models.run_folder import resolve_model
    from kdistill.models.weights import load_weights

    config = resolve_model(config)  # a run folder (as name or weights) stands for the model it trained
    source_name, _, argument = config.name.partition(":")
    source = MODEL_SOURCES.get(source_name)
    request = ModelRequest(argument or None, dict(config.kwargs), tuple(input_shape), num_classes, config.pretrained)
    try:
        model = source(request)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{role} {config.name!r} could not be built with kwargs {config.kwargs}: {exc}") from None
    if config.weights:
        load_weights(model, config.weights, role=role)
    check_model_io(model, input_shape, num_classes, role=f"{role} {config.name!r}")
    return model


def logits_of(output: object) -> torch.Tensor:
    """The logits of a model's output: a tensor, a (logits, ...) tuple, or an object with ``.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise ModelError(f"cannot find logits in a model output of type {type(output).__name__}")


def check_model_io(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, role: str) -> None:
    """Run one dummy sample; a wrong input shape or class count becomes a one-line ModelError."""
    from kdistill.models.hf import check_token_model_io, is_token_model

    if is_token_model(model):  # text models: long token ids in, (B, L, V) logits out
        return check_token_model_io(model, input_shape, num_classes, role)
    was_training = model.training
    model.eval()
    sample = torch.zeros(2, *input_shape, device=next(model.parameters(), torch.empty(0)).device)
    try:
        with torch.no_grad():
            logits = logits_of(model(sample))
    except (RuntimeError, ValueError, IndexError) as exc:
        message = str(exc).splitlines()[0]
        raise ModelError(
            f"{role} does not accept inputs of shape {tuple(input_shape)} from the data: {message}"
        ) from None
    finally:
        model.train(was_training)
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ModelError(
            f"{role} outputs shape {tuple(logits.shape[1:])} per sample but the data has {num_classes} classes; "
            "build it with the data's class count or pick weights trained on this data"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
