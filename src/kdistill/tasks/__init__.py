"""Tasks: how a model is called, scored and evaluated (see ``base.Task``). Each task is one module; this file
registers them, one line each, so the registry is complete as soon as ``kdistill.tasks`` is imported."""

from kdistill.tasks.base import TASKS, Task
from kdistill.tasks.causal_lm import CausalLMTask
from kdistill.tasks.classification import ClassificationTask
from kdistill.tasks.embedding import EmbeddingTask

TASKS.register("classification")(ClassificationTask)
TASKS.register("causal-lm")(CausalLMTask)
TASKS.register("embedding")(EmbeddingTask)

__all__ = ["TASKS", "CausalLMTask", "ClassificationTask", "EmbeddingTask", "Task"]
