"""Shape adapters: small trainable maps from a student feature to its paired teacher feature's shape.

They are submodules of the method that uses them, so they train with the student, are saved with the method's
state (never with the exported student), and count as the method's extra parameters.

Shapes here are one sample's, without the batch dimension: (C, H, W) for images, (T, D) for sequences, (D,).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kdistill.errors import ModelError

AdaptMode = Literal["full", "spatial"]


class Resize(nn.Module):
    """Bilinear resize of (B, C, H, W) maps to a fixed (H, W)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class Flatten2d(nn.Module):
    """(B, C, 1, 1) -> (B, C): a globally pooled map is a vector."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def _is_pooled(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[1:] == (1, 1)


def build_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], mode: AdaptMode = "full",
                  where: str = "") -> nn.Module:
    """The smallest module that maps a student feature of ``student_shape`` to ``teacher_shape``.

    Args:
        student_shape: one sample's student feature shape.
        teacher_shape: one sample's teacher feature shape.
        mode: ``full`` matches channels and resolution; ``spatial`` only resolution (for losses that compare
            channel-free statistics such as attention maps, where channel counts may differ).
        where: names the pair in error messages.

    Raises:
        ModelError: the shapes cannot be mapped onto each other in a sensible way.
    """
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    # A pooled (C, 1, 1) map against a vector: compare them as vectors.
    if _is_pooled(student_shape) and len(teacher_shape) == 1:
        return nn.Sequential(Flatten2d(), build_adapter(student_shape[:1], teacher_shape, mode, where))
    if len(student_shape) != len(teacher_shape):
        raise ModelError(
            f"{where or 'feature pair'}: cannot adapt a student feature of shape {student_shape} to a teacher feature "
            f"of shape {teacher_shape} (different kinds of features); pair layers of the same kind "
            "(`kdistill layers TEACHER STUDENT` lists them with their shapes)"
        )
    if mode == "spatial" and len(teacher_shape) != 3:
        raise ModelError(f"{where or 'feature pair'}: this method needs (C, H, W) feature maps, got student "
                         f"{student_shape} and teacher {teacher_shape}; pair convolutional layers")
    if student_shape == teacher_shape:
        return nn.Identity()
    if len(teacher_shape) == 3:
        return _image_adapter(student_shape, teacher_shape, mode)
    if len(teacher_shape) == 1:
        return nn.Linear(student_shape[0], teacher_shape[0])
    if len(teacher_shape) == 2 and student_shape[0] == teacher_shape[0]:
        return nn.Linear(student_shape[1], teacher_shape[1])  # (T, D): same tokens, project the width
    raise ModelError(f"{where or 'feature pair'}: cannot adapt student feature {student_shape} to teacher feature "
                     f"{teacher_shape}; sequence features need the same length")


def _image_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...], mode: AdaptMode) -> nn.Module:
    """1x1 conv + BN for channels (FitNets' regressor, as in mdistiller), bilinear resize for resolution."""
    layers: list[nn.Module] = []
    if mode == "full" and student_shape[0] != teacher_shape[0]:
        layers += [nn.Conv2d(student_shape[0], teacher_shape[0], 1, bias=False), nn.BatchNorm2d(teacher_shape[0])]
    if student_shape[1:] != teacher_shape[1:]:
        layers.append(Resize(teacher_shape[1:]))
    return nn.Sequential(*layers) if len(layers) != 1 else layers[0]


def extra_parameters(module: nn.Module) -> int:
    """Trainable parameters a method adds on top of the student (adapters, embedding heads)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
