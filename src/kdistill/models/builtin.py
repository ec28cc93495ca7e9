"""Built-in small models with width/depth knobs: ``mlp``, ``cnn`` and a CIFAR-style ``resnet``.

Their keyword arguments (``student.kwargs``, ``--student-kwargs '{width: 16}'``) are the constructor's, less the
input size and class count that come from the data; a wrong one is a ModelError listing the valid ones.
"""

from __future__ import annotations

import difflib
import inspect
import math

from torch import nn

from kdistill.errors import ModelError
from kdistill.models.base import MODEL_SOURCES, ModelRequest


class MLP(nn.Module):
    """Flatten, then ``depth`` x (Linear(width) + ReLU [+ Dropout]), then a linear head.

    Args:
        width: units per hidden layer.
        depth: hidden layers (0: a linear classifier).
        dropout: dropout after each hidden layer (0: none).
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 128, depth: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class SmallCNN(nn.Module):
    """``stages`` stages of ``depth`` conv-BN-ReLU blocks; width doubles and resolution halves per stage.

    Args:
        width: channels of the first stage.
        depth: conv-BN-ReLU blocks per stage.
        stages: stages (a 2x max-pool between two).
        dropout: dropout before the head (0: none).
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: int = 16, depth: int = 2, stages: int = 3, dropout: float = 0.0
    ):
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for stage in range(stages):
            out = width * 2**stage
            stage_layers = [conv_bn_relu(channels if i == 0 else out, out) for i in range(depth)]
            if stage < stages - 1:
                stage_layers.append(nn.MaxPool2d(2, ceil_mode=True))
            blocks.append(nn.Sequential(*stage_layers))
            channels = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.dropout(self.pool(self.features(x)).flatten(1)))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): 3x3 stem, stages at widths w, 2w, 4w (stride 2 between).

    Args:
        width: channels of the stem and the first stage.
        blocks: basic blocks per stage, e.g. [2, 2, 2] (ResNet-14); one entry per stage.
        stem_stride: stride of the stem (2 halves the resolution of large images first).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        blocks: tuple[int, ...] = (2, 2, 2),
        stem_stride: int = 1,
    ):
        super().__init__()
        self.stem = conv_bn_relu(in_channels, width, stride=stem_stride)
        stages, channels = [], width
        for index, count in enumerate(blocks):
            out = width * 2**index
            stage = [
                BasicBlock(channels if i == 0 else out, out, 2 if (i == 0 and index > 0) else 1) for i in range(count)
            ]
            stages.append(nn.Sequential(*stage))
            channels = out
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.layers(self.stem(x))).flatten(1))


BUILTIN_MODELS: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": SmallCNN, "resnet": SmallResNet}
DATA_ARGUMENTS = ("in_features", "in_channels", "num_classes")  # filled in from the data, never from kwargs


def builtin_kwargs(name: str) -> dict[str, object]:
    """The kwargs of built-in model ``name`` and their defaults: what ``--student-kwargs`` may set."""
    parameters = inspect.signature(BUILTIN_MODELS[name]).parameters
    return {key: p.default for key, p in parameters.items() if key not in DATA_ARGUMENTS}


def checked_kwargs(name: str, kwargs: dict) -> dict:
    """``kwargs`` when the model takes each of them; otherwise a TypeError listing the valid ones (build_model turns
    it into a ModelError that names the role: "student 'mlp' could not be built ...")."""
    valid = builtin_kwargs(name)
    unknown = [key for key in kwargs if key not in valid]
    if not unknown:
        return kwargs
    close = difflib.get_close_matches(unknown[0], list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(f"{key} (default {default!r})" for key, default in valid.items())
    raise TypeError(f"{name} takes no kwarg {', '.join(map(repr, unknown))}{hint}; its kwargs are: {listing}")


def _image_shape(request: ModelRequest, name: str) -> int:
    if len(request.input_shape) != 3:
        raise ModelError(f"{name} needs image inputs (C, H, W); the data gives shape {request.input_shape}; use mlp")
    return request.in_channels


@MODEL_SOURCES.register("mlp")
def build_mlp(request: ModelRequest) -> nn.Module:
    return MLP(math.prod(request.input_shape), request.num_classes, **checked_kwargs("mlp", request.kwargs))


@MODEL_SOURCES.register("cnn")
def build_cnn(request: ModelRequest) -> nn.Module:
    return SmallCNN(_image_shape(request, "cnn"), request.num_classes, **checked_kwargs("cnn", request.kwargs))


@MODEL_SOURCES.register("resnet")
def build_resnet(request: ModelRequest) -> nn.Module:
    kwargs = dict(checked_kwargs("resnet", request.kwargs))
    if "blocks" in kwargs:
        kwargs["blocks"] = tuple(kwargs["blocks"])
    return SmallResNet(_image_shape(request, "resnet"), request.num_classes, **kwargs)
