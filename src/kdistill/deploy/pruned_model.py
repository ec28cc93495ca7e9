"""Model source ``pruned``: a model of another source with some layers narrowed by structured pruning.

A pruned run's config names the original model and the shapes that changed, e.g.
``student: {name: pruned, kwargs: {base: {name: cnn, kwargs: {width: 16}}, shapes: {features.0.0.weight: [8, 1, 3,
3], ...}}}``, so the run folder stays a normal one: ``kdistill eval`` rebuilds the narrowed model and loads its
weights. Layers are resized generically (conv, linear, norm, embedding), which covers what Torch-Pruning removes.
"""

from __future__ import annotations

import torch
from torch import nn

from kdistill.models.base import MODEL_SOURCES, ModelRequest


@MODEL_SOURCES.register("pruned")
def build_pruned(request: ModelRequest) -> nn.Module:
    base, shapes = request.kwargs.get("base"), request.kwargs.get("shapes")
    if not isinstance(base, dict) or "name" not in base or not isinstance(shapes, dict):
        raise ValueError("pruned needs kwargs {base: {name, kwargs}, shapes: {tensor name: shape}}")
    source_name, _, argument = base["name"].partition(":")
    model = MODEL_SOURCES.get(source_name)(
        ModelRequest(argument or None, dict(base.get("kwargs", {})), request.input_shape, request.num_classes, False)
    )
    resize_to(model, {name: tuple(shape) for name, shape in shapes.items()})
    return model


def changed_shapes(pruned: nn.Module, original: nn.Module) -> dict[str, list[int]]:
    """The tensors whose shape pruning changed: what ``build_pruned`` needs to rebuild the narrowed model."""
    before = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    return {k: list(v.shape) for k, v in pruned.state_dict().items() if before.get(k) != tuple(v.shape)}


def resize_to(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
    """Replace every parameter/buffer named in ``shapes`` by an empty one of that shape; fix the layers' sizes."""
    modules = dict(model.named_modules())
    resized: set[str] = set()
    for name, shape in shapes.items():
        owner_name, _, attr = name.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None or getattr(owner, attr, None) is None:
            raise ValueError(f"the base model has no tensor {name!r}")
        old = getattr(owner, attr)
        new = torch.zeros(shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(owner, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            owner.register_buffer(attr, new)
        resized.add(owner_name)
    for owner_name in resized:
        _fix_sizes(modules[owner_name])


def _fix_sizes(module: nn.Module) -> None:
    """The size attributes forward() reads (groups, normalized_shape ...) from the resized weights."""
    if isinstance(module, nn.modules.conv._ConvNd):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        module.out_channels = module.weight.shape[0]
        if depthwise:
            module.groups = module.out_channels
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = (module.weight if module.weight is not None else module.running_mean).shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(module.weight.shape)
    elif isinstance(module, nn.GroupNorm):
        module.num_channels = module.weight.shape[0]
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = module.weight.shape
