"""kdistill: turn a large teacher into a small, fast student by knowledge distillation, and prove it."""

from kdistill.api import EvalEntry, RunResult, distill, evaluate, train
from kdistill.config import DataConfig, DistillConfig, ModelConfig, RunConfig, load_config
from kdistill.errors import KdistillError

__version__ = "0.1.0"

__all__ = ["DataConfig", "DistillConfig", "EvalEntry", "KdistillError", "ModelConfig", "RunConfig", "RunResult",
           "distill", "evaluate", "load_config", "train", "__version__"]
