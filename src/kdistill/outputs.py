"""What a forward pass hands to the methods: logits plus the tapped features, by module name."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ModelOutputs:
    logits: torch.Tensor  # (B, C) for classifiers, (B, T, V) for language models
    features: dict[str, torch.Tensor] = field(default_factory=dict)  # module name -> its output
