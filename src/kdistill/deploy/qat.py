"""Quantization-aware distillation: fine-tune the fake-quantized student on the teacher's soft targets, then int8.

torchao's pt2e flow: ``torch.export`` -> ``prepare_qat_pt2e`` (fake-quantize weights per channel and activations,
batch norm folded) -> a few epochs of KD -> ``convert_pt2e`` (quantize/dequantize pairs around int8 weights). The
converted graph exports to ONNX as QDQ, or to .pt2. The X86 quantizer of torchao is used: it ships with torchao
(no ExecuTorch needed) and matches ONNX Runtime's x86 kernels (uint8 activations, int8 per-channel weights).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from kdistill.config import DeployConfig, DistillConfig
from kdistill.data.base import DataSplits
from kdistill.deploy.formats import dynamic_shapes_of
from kdistill.deploy.source import TaskModule, example_batch


def kd_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, distill: DistillConfig
            ) -> torch.Tensor:
    """alpha * CE + (1 - alpha) * T^2 * KL(teacher || student), the run's own KD recipe."""
    t = distill.temperature
    soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1), log_target=True,
                    reduction="batchmean") * t * t
    return distill.alpha * F.cross_entropy(logits, targets) + (1 - distill.alpha) * soft


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """A copy with every BatchNorm that follows a conv in an ``nn.Sequential`` folded into that conv (eval stats).

    Why: pt2e folds conv-BN itself, but by matching 96 traced patterns (minutes on a small CPU); QAT on the folded
    convs (BN statistics frozen, as late QAT does anyway) learns the same int8 graph without that cost.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for sequential in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        children = list(sequential.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                setattr(sequential, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(sequential, bn_name, nn.Identity())
    return folded


def prepare_qat(student: TaskModule, example: tuple[torch.Tensor, ...]) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    student = fold_batch_norms(student).train()
    graph = torch.export.export(student, example, dynamic_shapes=dynamic_shapes_of(student, example)).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    return prepare_qat_pt2e(graph, quantizer)


def qat_distill(student: TaskModule, teacher: nn.Module, splits: DataSplits, distill: DistillConfig,
                options: DeployConfig, batch_size: int, seed: int = 0) -> nn.Module:
    """The int8 student (a converted pt2e graph: named inputs -> logits) after ``options.qat_epochs`` of KD."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    torch.manual_seed(seed)
    batch = example_batch(splits, size=4)
    fake_quantized = prepare_qat(student, (batch["input"],))
    optimizer = torch.optim.AdamW(fake_quantized.parameters(), lr=options.qat_lr)
    teacher.eval()
    move_exported_model_to_train(fake_quantized)
    for _ in range(options.qat_epochs):
        for batch in DataLoader(splits.train, batch_size=batch_size, shuffle=True, drop_last=True):
            with torch.no_grad():
                teacher_logits = teacher(batch["input"])
            loss = kd_loss(fake_quantized(batch["input"]), teacher_logits, batch["target"], distill)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    move_exported_model_to_eval(fake_quantized)
    return convert_pt2e(fake_quantized)
