"""kdistill: turn a large teacher into a small, fast student by knowledge distillation, and prove it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kdistill.errors import KdistillError

__version__ = "0.1.0"

__all__ = ["DataConfig", "DistillConfig", "EvalEntry", "KdistillError", "ModelConfig", "RunConfig", "RunResult",
           "distill", "evaluate", "load_config", "load_model", "train", "__version__"]

# The public names load on first use: ``kdistill.api`` imports Fabric and torch (seconds), which the CLI must not
# pay for ``--help`` or a usage error.
_LAZY = {"EvalEntry": "kdistill.api", "RunResult": "kdistill.api", "distill": "kdistill.api",
         "evaluate": "kdistill.api", "train": "kdistill.api", "DataConfig": "kdistill.config",
         "DistillConfig": "kdistill.config", "ModelConfig": "kdistill.config", "RunConfig": "kdistill.config",
         "load_config": "kdistill.config", "load_model": "kdistill.models.run_folder"}

if TYPE_CHECKING:
    from kdistill.api import EvalEntry, RunResult, distill, evaluate, train
    from kdistill.config import DataConfig, DistillConfig, ModelConfig, RunConfig, load_config
    from kdistill.models.run_folder import load_model


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kdistill' has no attribute {name!r}")
