"""Models from timm, torchvision and user files.

Pretrained weights are downloaded by timm/torchvision themselves (``pretrained: true``), which needs internet;
tests and the demo never ask for them.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import sys
from pathlib import Path

import torch
from torch import nn

from kdistill.errors import ModelError
from kdistill.models.base import MODEL_SOURCES, ModelRequest


@MODEL_SOURCES.register("timm")
def build_timm(request: ModelRequest) -> nn.Module:
    import timm

    name = request.argument or ""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6) if name else []
        raise ModelError(f"unknown timm model {name!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    kwargs = dict(request.kwargs)
    if len(request.input_shape) == 3:
        kwargs.setdefault("in_chans", request.in_channels)
    return timm.create_model(name, pretrained=request.pretrained, num_classes=request.num_classes, **kwargs)


@MODEL_SOURCES.register("torchvision")
def build_torchvision(request: ModelRequest) -> nn.Module:
    from torchvision import models

    name = request.argument or ""
    if name not in models.list_models():
        raise ModelError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()")
    if request.pretrained:
        model = models.get_model(name, weights="DEFAULT", **request.kwargs)
        replace_classifier(model, request.num_classes)
    else:
        model = models.get_model(name, weights=None, num_classes=request.num_classes, **request.kwargs)
    if len(request.input_shape) == 3:
        adapt_input_channels(model, request.in_channels)
    return model


def replace_classifier(model: nn.Module, num_classes: int) -> None:
    """Swap the last Linear layer for one with ``num_classes`` outputs (pretrained backbones)."""
    parent_name, linear = None, None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            parent_name, linear = name, module
    if linear is None or parent_name is None:
        raise ModelError("cannot find a Linear classifier to resize to the data's class count")
    if linear.out_features != num_classes:
        _set_submodule(model, parent_name, nn.Linear(linear.in_features, num_classes))


def adapt_input_channels(model: nn.Module, in_channels: int) -> None:
    """Rebuild the first Conv2d for ``in_channels`` (pretrained RGB filters are averaged, as timm does)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.in_channels == in_channels:
                return
            conv = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.groups,
                module.bias is not None,
            )
            with torch.no_grad():
                mean = module.weight.mean(dim=1, keepdim=True)
                conv.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (module.in_channels / in_channels))
                if module.bias is not None:
                    conv.bias.copy_(module.bias)
            _set_submodule(model, name, conv)
            return


def _set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, new)


@MODEL_SOURCES.register("file")
def build_from_file(request: ModelRequest) -> nn.Module:
    """``file:path/to/models.py:factory``: the factory may take num_classes, in_channels, input_shape, **kwargs."""
    path_text, _, factory_name = (request.argument or "").rpartition(":")
    if not path_text or not factory_name:
        raise ModelError(f"file model {request.argument!r} must look like file:<path.py>:<factory>")
    path = Path(path_text)
    if not path.is_file():
        raise ModelError(f"model file {path_text!r} not found")
    module_name = f"kdistill_user_{path.stem}_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # lets dataclasses/pickling inside the user's file resolve their module
    spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise ModelError(f"{path_text} has no callable {factory_name!r}; callables there: {', '.join(names)}")
    offered = {
        "num_classes": request.num_classes,
        "in_channels": request.in_channels,
        "input_shape": request.input_shape,
    }
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_any or k in params}
    model = factory(**kwargs, **request.kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"{path_text}:{factory_name} returned {type(model).__name__}, not a torch.nn.Module")
    return model
