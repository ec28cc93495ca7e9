"""``ModelConfig``: a student or teacher model from one of the model sources."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from kdistill.config.base import FINITE, Section


class ModelConfig(Section):
    """A model from one of the sources: built-in, timm, torchvision, or a factory in a Python file."""

    name: str = Field(..., description="mlp | cnn | resnet | timm:<name> | torchvision:<name> | file:<path.py>:<fn>")
    kwargs: Annotated[dict[str, Any], FINITE] = Field(
        default_factory=dict, description="keyword arguments of the model factory"
    )
    weights: str | None = Field(None, description="weights file: .safetensors (default) or a torch checkpoint")
    pretrained: bool = Field(False, description="timm/torchvision: download pretrained weights (needs internet)")
    tokenizer: str | None = Field(
        None,
        description="language-model teacher only: its tokenizer ('byte' or a local folder) when it differs from the "
        "student's (data.tokenizer); default: the tokenizer files of an hf:<folder> teacher, else data.tokenizer. "
        "A different tokenizer needs the cross-tokenizer method 'uld'",
    )
