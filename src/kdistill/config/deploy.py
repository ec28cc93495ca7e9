"""The ``deploy`` section and its ``prune`` step: prune + KD, int8, export, parity and bench (``kdistill deploy``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kdistill.config.base import Section


class PruneConfig(Section):
    """Structured pruning (Torch-Pruning: whole channels removed), then distillation from the teacher to recover."""

    amount: float = Field(0.5, gt=0.0, lt=1.0, description="share of the student's parameters (or FLOPs) to remove")
    measure: Literal["params", "flops"] = Field("params", description="what `amount` is a share of")
    allocation: Literal["uniform", "global"] = Field(
        "uniform", description="uniform: the same share of every layer's channels; global: channels ranked across "
        "layers (magnitude normalised per layer), so layers lose different shares, at most 75% each")
    steps: int = Field(1, gt=0, description="iterative schedule: prune amount/steps more, then distil, this many times")
    epochs: int = Field(2, gt=0, description="distillation epochs after each pruning step")


class DeployConfig(Section):
    """``kdistill deploy``: prune + KD -> int8 (PTQ or QAT + KD) -> export -> parity -> bench, into <run>/deploy/."""

    format: str = Field("onnx", description="export format: onnx | pt2 | pte (ExecuTorch, XNNPACK)")
    prune: PruneConfig | None = Field(None, description="structured pruning, e.g. {amount: 0.5} (None: off)")
    quantize: Literal["none", "int8"] = Field("none", description="int8: weights and activations in 8 bits")
    quantize_method: Literal["static", "dynamic", "qat"] = Field(
        "static", description="static: ONNX Runtime QDQ per-channel, calibrated; dynamic: ONNX Runtime, no "
        "calibration; qat: quantization-aware distillation (torchao pt2e), then int8 export"
    )
    calibration_samples: int = Field(256, gt=0, description="static int8: training samples for calibration")
    calibration_method: Literal["minmax", "percentile", "entropy"] = Field(
        "minmax", description="static int8: minmax takes each activation's full observed range; percentile "
        "(99.999th) and entropy clip rare outliers"
    )
    int8_keep_float: list[Literal["first", "last"]] = Field(
        [], description="static int8: weighted layers left in fp32, e.g. [last] (the layer that decides the class)"
    )
    qat_epochs: int = Field(1, gt=0, description="qat: distillation epochs of the fake-quantized student")
    qat_lr: float = Field(1e-4, gt=0, description="qat: learning rate (AdamW)")
    parity_samples: int = Field(512, gt=0, description="validation samples compared with the PyTorch student")
    parity_atol: float = Field(1e-3, gt=0, description="float artefacts: largest allowed |logit difference|")
    int8_min_agreement: float = Field(
        0.9, gt=0.0, le=1.0, description="int8 artefacts: least share of samples with the float student's top-1"
    )
    threads: int = Field(1, gt=0, description="bench: CPU threads of every runtime (pinned and reported)")
    latency_runs: int = Field(100, gt=0, description="bench: timed batch-1 runs (median and p95)")
    warmup_runs: int = Field(10, ge=0, description="bench: untimed runs first")
    throughput_batch: int = Field(256, gt=0, description="bench: batch size of the throughput figure")
