"""What can be tapped in a model, and which student/teacher layers to pair when the user says ``pairs: auto``.

Everything works from forward hooks on one sample, so built-in, timm, torchvision and user models are handled
alike without editing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kdistill.errors import ModelError


@dataclass(frozen=True)
class LayerInfo:
    """One module's output on a sample, in the order modules finish their forward (containers after children)."""

    name: str
    type: str
    output_shape: tuple[int, ...]  # one sample, without the batch dimension
    calls: int = 1  # modules called more than once (a shared ReLU) are ambiguous to tap
    is_output: bool = False  # the output is the model's output tensor itself (classifier and its wrappers)


def _first_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, (tuple, list)) and output:
        output = output[0]  # same rule as FeatureTaps
    return output if isinstance(output, torch.Tensor) else None


def list_layers(model: nn.Module, sample_input: torch.Tensor) -> list[LayerInfo]:
    """Run ``sample_input`` (a batch) through ``model`` in eval mode and list every module that returned a tensor.

    Returns:
        Layers in completion order; the root module is left out.
    """
    records: dict[str, list] = {}  # name -> [type, output tensor of the last call, calls]

    def hook_for(name: str):
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                return
            entry = records.setdefault(name, [type(module).__name__, tensor, 0])
            entry[1], entry[2] = tensor, entry[2] + 1
            records[name] = records.pop(name)  # move to the end: order by (last) completion

        return record

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    sample_input = sample_input.to(next(model.parameters(), sample_input).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = model(sample_input)
            output = _first_tensor(raw) if _first_tensor(raw) is not None else getattr(raw, "logits", None)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return [LayerInfo(name, kind, tuple(tensor.shape[1:]), calls, tensor is output)
            for name, (kind, tensor, calls) in records.items()]


def _is_global_pool(layer: LayerInfo) -> bool:
    return len(layer.output_shape) == 3 and layer.output_shape[1:] == (1, 1) and "Pool" in layer.type


def stage_layers(layers: list[LayerInfo]) -> list[LayerInfo]:
    """For each distinct spatial resolution of the (C, H, W) outputs, the last module at that resolution.

    Global-pooling outputs are left out (they are the embedding, not a stage); so are modules called twice.
    """
    last_at: dict[tuple[int, int], LayerInfo] = {}
    for layer in layers:
        if len(layer.output_shape) == 3 and layer.calls == 1 and not _is_global_pool(layer):
            last_at[layer.output_shape[1:]] = layer
    order = {layer.name: i for i, layer in enumerate(layers)}
    return sorted(last_at.values(), key=lambda layer: order[layer.name])


def embedding_layer(layers: list[LayerInfo]) -> LayerInfo:
    """The penultimate feature: the last module that runs before the classifier, skipping dropout.

    The classifier is the first of the trailing modules whose output is the model's output (``head.fc`` inside
    ``head``); when the output is changed after the last module, the trailing modules of the output's shape.
    """
    tail = len(layers)
    while tail > 0 and layers[tail - 1].is_output:
        tail -= 1
    if tail == len(layers) and layers:
        output_shape = layers[-1].output_shape
        while tail > 0 and layers[tail - 1].output_shape == output_shape:
            tail -= 1
    for layer in reversed(layers[:tail]):
        if layer.calls == 1 and "Dropout" not in layer.type:
            return layer
    raise ModelError("cannot find a penultimate layer (the input of the classifier); give pairs explicitly")


def _nearest(resolution: tuple[int, int], candidates: list[LayerInfo]) -> LayerInfo:
    area = math.prod(resolution)
    # Nearest on a log scale: 8x8 is as far from 4x4 as 4x4 is from 2x2.
    return min(candidates, key=lambda layer: abs(math.log(area / math.prod(layer.output_shape[1:]))))


def match_stages(student_layers: list[LayerInfo], teacher_layers: list[LayerInfo]) -> list[tuple[str, str]]:
    """Each student stage with the teacher's last module at the nearest resolution; [] if either has no stages."""
    student_stages, teacher_stages = stage_layers(student_layers), stage_layers(teacher_layers)
    if not student_stages or not teacher_stages:
        return []
    pairs = [(s.name, _nearest(s.output_shape[1:], teacher_stages).name) for s in student_stages]
    return list(dict.fromkeys(pairs))


def propose_pairs(student: nn.Module, teacher: nn.Module, sample_input: torch.Tensor) -> list[tuple[str, str]]:
    """Automatic (student_module, teacher_module) pairs: stage by resolution, or the penultimate features when
    either model has no (C, H, W) outputs (MLPs, transformers)."""
    student_layers, teacher_layers = list_layers(student, sample_input), list_layers(teacher, sample_input)
    return match_stages(student_layers, teacher_layers) or [embedding_pair_of(student_layers, teacher_layers)]


def embedding_pair_of(student_layers: list[LayerInfo], teacher_layers: list[LayerInfo]) -> tuple[str, str]:
    return embedding_layer(student_layers).name, embedding_layer(teacher_layers).name


def embedding_pair(student: nn.Module, teacher: nn.Module, sample_input: torch.Tensor) -> tuple[str, str]:
    """The penultimate features of both models (what relational and contrastive methods compare)."""
    return embedding_pair_of(list_layers(student, sample_input), list_layers(teacher, sample_input))
