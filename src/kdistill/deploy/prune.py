"""Structured pruning with Torch-Pruning (whole channels removed), then distillation from the teacher to recover.

The channel ratio that meets a parameter (or FLOP) target is found by bisection on copies of the model, since
removing a share r of channels removes roughly r(2 - r) of the weights, and less where layers are kept whole.
An iterative schedule (``prune.steps``) prunes amount/steps more of the original size per step, then distils.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kdistill.config import ModelConfig, PruneConfig
from kdistill.deploy.errors import PruneError
from kdistill.deploy.pruned_model import changed_shapes
from kdistill.deploy.source import LoadedRun, example_batch
from kdistill.models.base import count_parameters
from kdistill.models.weights import save_weights

MAX_CHANNEL_RATIO = 0.75  # every prunable layer keeps a quarter of its channels (Torch-Pruning skips layers past ~0.8)
BISECTION_ROUNDS = 14


@dataclass
class PruneStep:
    step: int
    run_dir: Path
    parameters: int
    macs: int
    share_removed: float  # of the original measure (params or flops)


def size_of(model: nn.Module, example: torch.Tensor, measure: str) -> int:
    """Parameters, or multiply-accumulates of one forward of ``example`` (FLOP shares equal MAC shares)."""
    if measure == "params":
        return count_parameters(model)
    import torch_pruning as tp

    return int(tp.utils.count_ops_and_params(model, example)[0])


def output_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """Layers whose outputs are the logits: kept whole, or the class count would change."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    return heads[-1:]


def prune_channels(model: nn.Module, example: torch.Tensor, ratio: float, num_classes: int,
                   allocation: str = "uniform") -> nn.Module:
    """Remove ``ratio`` of the prunable channels (smallest L2 magnitude first), in place: that share of each layer
    (``uniform``), or of all layers together, ranked by magnitude normalised by each layer's mean (``global``)."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=ratio, iterative_steps=1, global_pruning=allocation == "global",
                                  max_pruning_ratio=MAX_CHANNEL_RATIO,
                                  ignored_layers=output_layers(model, num_classes))
    pruner.step()
    model.train(was_training)
    return model


def prune_to(model: nn.Module, example: torch.Tensor, keep: int, measure: str, num_classes: int,
             allocation: str = "uniform") -> nn.Module:
    """Prune ``model`` in place until its ``measure`` is at most ``keep`` (PruneError when that cannot be met)."""
    current = size_of(model, example, measure)
    if current <= keep:
        return model

    def size_at(ratio: float) -> int:
        pruned = prune_channels(copy.deepcopy(model), example, ratio, num_classes, allocation)
        return size_of(pruned, example, measure)

    smallest = size_at(MAX_CHANNEL_RATIO)
    if smallest > keep:
        raise PruneError(f"pruning target cannot be met: {keep:,} {measure} asked, but removing "
                         f"{100 * MAX_CHANNEL_RATIO:.0f}% of every prunable layer's channels still leaves "
                         f"{smallest:,} of {current:,} (the output layer stays whole); ask for less pruning")
    low, high = 0.0, MAX_CHANNEL_RATIO  # size_at(high) <= keep always holds
    for _ in range(BISECTION_ROUNDS):
        middle = (low + high) / 2
        low, high = (low, middle) if size_at(middle) <= keep else (middle, high)
    return prune_channels(model, example, high, num_classes, allocation)


def pruned_model_config(model: nn.Module, base: ModelConfig, original: nn.Module, weights: Path) -> ModelConfig:
    """The config of a pruned model: its original (never a pruned of a pruned) and the shapes that changed."""
    if base.name == "pruned":  # pruning a pruned run: describe the new shapes against the same original
        base = ModelConfig(**base.kwargs["base"])
    spec = {"base": {"name": base.name, "kwargs": dict(base.kwargs)}, "shapes": changed_shapes(model, original)}
    return ModelConfig(name="pruned", kwargs=spec, weights=str(weights))


def original_model(base: ModelConfig, splits) -> nn.Module:
    from kdistill.models.base import build_model

    spec = base.kwargs["base"] if base.name == "pruned" else {"name": base.name, "kwargs": base.kwargs}
    return build_model(ModelConfig(**spec), splits.input_shape, splits.num_classes, role="original student")


def prune_and_distill(run: LoadedRun, teacher: ModelConfig, prune: PruneConfig, out_dir: Path) -> list[PruneStep]:
    """Each step: prune to the step's share of the original, save, distil from ``teacher`` as a normal run folder.

    The last step's run folder is ``out_dir/pruned``; earlier ones ``out_dir/pruned-step<i>``.
    """
    from kdistill import api

    if run.task.name != "classification":
        raise PruneError(f"structured pruning supports classification students; run {run.name!r} is "
                         f"task {run.task.name!r}")
    example = example_batch(run.splits)["input"]
    model = copy.deepcopy(run.student)
    original_size = size_of(model, example, prune.measure)
    original = original_model(run.config.student, run.splits)
    steps: list[PruneStep] = []
    for step in range(1, prune.steps + 1):
        keep = int(original_size * (1 - prune.amount * step / prune.steps))
        prune_to(model, example, keep, prune.measure, run.splits.num_classes, prune.allocation)
        name = "pruned" if step == prune.steps else f"pruned-step{step}"
        init = out_dir / "prune-init" / f"{name}.safetensors"
        init.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model, init)
        config = run.config.model_copy(deep=True, update={
            "name": name, "output_dir": str(out_dir), "teacher": teacher,
            "student": pruned_model_config(model, run.config.student, original, init)})
        config.trainer.epochs = prune.epochs
        config.distill.stages = []
        model = api.distill(config, overwrite=True).student
        steps.append(PruneStep(step, out_dir / name, count_parameters(model), size_of(model, example, "flops"),
                               1 - size_of(model, example, prune.measure) / original_size))
    return steps
