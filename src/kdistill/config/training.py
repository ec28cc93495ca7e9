"""The ``optim``, ``trainer`` and ``eval`` sections: optimiser and schedule, the Fabric training loop, measurement."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from kdistill.config.base import Section

ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")  # launched by fabric.launch() in-script
PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "16-mixed", "bf16-true", "16-true")
# The trainer keys checked against Lightning Fabric's names; one validator serves them all.
FABRIC_CHOICES = {"accelerator": ACCELERATORS, "precision": PRECISIONS, "strategy": STRATEGIES}


class OptimConfig(Section):
    """The optimiser and its learning-rate schedule."""

    name: Literal["sgd", "adamw", "adam"] = Field("adamw", description="sgd | adamw | adam")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="weight decay (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(True, description="sgd only: Nesterov momentum (false: classical momentum)")
    schedule: Literal["cosine", "step", "constant"] = Field("cosine", description="cosine | step | constant, per step")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up from 0 to lr over this many epochs")
    step_size: int = Field(30, gt=0, description="step schedule: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="step schedule: decay factor")


class TrainerConfig(Section):
    """The training loop: schedule length, batches, devices and precision."""

    epochs: int = Field(10, gt=0, description="passes over the training split")
    batch_size: int = Field(128, gt=0, description="samples per micro-batch on each process (global: x processes)")
    eval_batch_size: int = Field(512, gt=0, description="samples per forward pass on validation and test")
    accelerator: str = Field("auto", description="cpu | cuda | gpu | mps | tpu | auto (Lightning Fabric)")
    devices: int | str = Field(1, description="devices per node: a number, 'auto' or -1 (all)")
    num_nodes: int = Field(1, gt=0, description="machines; launch with torchrun or SLURM (docs/scaling.md)")
    strategy: str = Field("auto", description="Lightning Fabric strategy: auto | ddp | fsdp ...")
    precision: str = Field("32-true", description="32-true | bf16-mixed | 16-mixed (Lightning Fabric)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    grad_clip: float | None = Field(None, gt=0, description="clip gradient norm to this value")
    accumulate_grad_batches: int = Field(1, gt=0, description="micro-batches per optimiser step")
    checkpoint_every_steps: int | None = Field(
        None, gt=0, description="also checkpoint every N optimiser steps (None: at each epoch end only)"
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a NaN/inf loss or gradient: stop the run naming the term and batch, or skip the batch"
    )
    progress: bool = Field(True, description="show rich progress bars")

    @field_validator(*FABRIC_CHOICES)
    @classmethod
    def _known_fabric_name(cls, value: str, info: ValidationInfo) -> str:
        allowed = FABRIC_CHOICES[info.field_name]
        if value not in allowed:
            raise ValueError(f"unknown {info.field_name} {value!r}; choose one of: {', '.join(allowed)}")
        return value

    @field_validator("devices")
    @classmethod
    def _valid_devices(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():  # the CLI passes "2"
            value = int(value)
        if isinstance(value, int) and (value >= 1 or value == -1):
            return value
        indices = str(value).strip().rstrip(",").split(",")
        if isinstance(value, str) and (value == "auto" or all(part.strip().isdigit() for part in indices)):
            return value
        raise ValueError(f"devices must be a count >= 1, -1 (all), 'auto', or device indices like '0,1'; "
                         f"got {value!r}")


class EvalConfig(Section):
    """How test metrics and speed are measured."""

    latency_runs: int = Field(100, gt=0, description="timed batch-1 forward passes (median reported)")
    warmup_runs: int = Field(10, ge=0, description="untimed forward passes before the timed ones")
    throughput_batch: int = Field(256, gt=0, description="batch size of the throughput measurement")
    threads: int | None = Field(None, gt=0, description="torch threads during latency runs (None: keep current)")
    ece_bins: int = Field(15, gt=0, description="equal-width confidence bins of the calibration error (ECE)")
    teacher_metrics: bool = Field(
        True, description="run the teacher over the test split at the end (teacher accuracy, agreement); false saves "
        "that pass, which dominates short runs from a cache or with a big teacher"
    )
