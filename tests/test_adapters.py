"""Shape adapters: the right module for each mismatch, correct output shapes, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdistill.adapters import Resize, build_adapter, extra_parameters
from kdistill.errors import ModelError


def _apply(adapter: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(adapter(torch.randn(2, *shape)).shape[1:])


def test_same_shape_needs_no_adapter():
    adapter = build_adapter((4, 8, 8), (4, 8, 8))
    assert isinstance(adapter, nn.Identity) and extra_parameters(adapter) == 0


def test_channel_mismatch_uses_1x1_conv_and_batch_norm():
    adapter = build_adapter((4, 8, 8), (6, 8, 8))
    assert _apply(adapter, (4, 8, 8)) == (6, 8, 8)
    conv = adapter[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and isinstance(adapter[1], nn.BatchNorm2d)
    assert extra_parameters(adapter) == 4 * 6 + 2 * 6  # conv weights (no bias) + BN affine


def test_spatial_mismatch_is_resized_bilinearly():
    adapter = build_adapter((4, 8, 8), (4, 4, 4))
    assert isinstance(adapter, Resize) and extra_parameters(adapter) == 0
    x = torch.randn(1, 4, 8, 8)
    expected = torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(adapter(x), expected)


def test_channel_and_spatial_mismatch():
    assert _apply(build_adapter((4, 8, 8), (6, 2, 2)), (4, 8, 8)) == (6, 2, 2)


def test_spatial_mode_keeps_channels():
    adapter = build_adapter((4, 8, 8), (6, 4, 4), mode="spatial")
    assert _apply(adapter, (4, 8, 8)) == (4, 4, 4) and extra_parameters(adapter) == 0


def test_vectors_and_sequences_use_linear_maps():
    assert isinstance(build_adapter((8,), (12,)), nn.Linear)
    assert _apply(build_adapter((5, 8), (5, 12)), (5, 8)) == (5, 12)
    assert _apply(build_adapter((16, 1, 1), (12,)), (16, 1, 1)) == (12,)  # a pooled map is a vector


@pytest.mark.parametrize(("student", "teacher", "mode", "message"), [
    ((16, 4, 4), (12,), "full", "different kinds of features"),
    ((5, 8), (8, 4, 4), "full", "different kinds of features"),  # token sequence vs image map
    ((5, 8), (6, 8), "full", "same length"),
    ((8,), (8,), "spatial", "feature maps"),
])
def test_unadaptable_pairs_raise_model_error(student, teacher, mode, message):
    with pytest.raises(ModelError, match=message):
        build_adapter(student, teacher, mode, where="fitnet pair ['a', 'b']")
