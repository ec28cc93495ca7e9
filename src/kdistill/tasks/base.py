"""The task interface: everything that differs between classification, language modelling and sentence embeddings.

A task says how a model is called on a batch, what the hard-label loss is and how it is normalised per optimiser
step, what "correct" means, which methods and teacher capabilities it accepts, how a run's data and teacher are
prepared, the final test metrics, an example batch (export, latency) and the columns of its result rows. The run
(``kdistill.api``) only calls these hooks, so a new task is one module plus one registration line in
``kdistill.tasks``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill.errors import ConfigError
from kdistill.registry import Registry

if TYPE_CHECKING:
    from kdistill.config import RunConfig
    from kdistill.data.base import DataSplits
    from kdistill.methods.base import Method
    from kdistill.teachers.base import Teacher


class Task:
    name: ClassVar[str] = ""
    class_accuracy: ClassVar[bool] = False  # a model's top-1 on the test split is this task's accuracy (deploy bench)
    parity_by: ClassVar[str] = "top1"  # how an exported model is compared with PyTorch: top-1 or cosine
    int8_methods: ClassVar[tuple[str, ...]] = ()  # the int8 methods of kdistill.deploy.quantize this task supports
    # Batch keys the model reads (``example_batch`` holds exactly these).
    input_keys: ClassVar[tuple[str, ...]] = ("input",)
    # One teacher row per position (a language model's (T, V) logits per sequence) rather than per sample.
    per_position: ClassVar[bool] = False
    # ``kdistill cache build`` can store this task's teacher outputs (one row per training sample).
    cacheable: ClassVar[bool] = True
    # Result-row columns (plain keys of ``row``); the results model renders them.
    result_columns: ClassVar[tuple[str, ...]] = ()

    # ----- how a model is called and scored (the training loop uses these) -----

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The hard-label (task) loss, a scalar."""
        raise NotImplementedError

    def correct(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(number of correct predictions, number of predictions) for accuracy."""
        raise NotImplementedError

    def agreement(self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, int]:
        """(predictions where student and teacher pick the same class, number of predictions)."""
        raise NotImplementedError

    def prepare_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> float:
        """Called before the micro-batches of one optimiser step; returns the divisor of each micro-batch loss.

        Default: losses are per-sample means, so divide by the number of micro-batches.
        """
        return float(len(micro_batches))

    def scored(self, batch: dict[str, torch.Tensor], count: int) -> int:
        """How many of the ``count`` predictions of ``correct`` have a label (training accuracy is over these)."""
        return count

    def log_scale(self, batch: dict[str, torch.Tensor], count: int) -> float:
        """Factor turning this micro-batch's loss into its own per-prediction mean, for logging."""
        return 1.0

    # ----- run assembly (kdistill.api calls these in order) -----

    def check_config(self, config: RunConfig, distilling: bool) -> RunConfig:
        """Refuse what this task cannot run, before anything is built; may resolve defaults (returns the config)."""
        used = [key for key, block in (("distill.on_policy", config.distill.on_policy),
                                       ("distill.sequence_kd", config.distill.sequence_kd)) if block is not None]
        if used:
            raise ConfigError(f"{' and '.join(used)} need task causal-lm (task is {self.name!r}); remove them")
        return config

    def check_methods(self, methods: dict[str, Method]) -> None:
        """Every method must declare this task in its ``tasks``."""
        from kdistill.methods.base import METHODS

        foreign = sorted(name for name, method in methods.items() if self.name not in method.tasks)
        if foreign:
            suitable = [name for name in METHODS.names() if self.name in METHODS.get(name).tasks]
            made_for = sorted({task for name in foreign for task in methods[name].tasks})
            raise ConfigError(f"methods {foreign} do not apply to task {self.name} (they are for "
                              f"{', '.join(made_for)}); methods for {self.name}: {', '.join(suitable)}")

    def teacher_needs(self, config: RunConfig) -> dict[str, str]:
        """Teacher capabilities this run needs beyond the methods' (capability -> what needs it)."""
        return {}

    def prepare_data(self, config: RunConfig, splits: DataSplits, distilling: bool) -> DataSplits:
        """Task-specific data for a run (e.g. teacher tokens); called before the teacher is built."""
        return splits

    def teacher_num_classes(self, splits: DataSplits) -> int:
        """Output size to build the teacher model with (a language-model teacher may have its own vocabulary)."""
        return splits.num_classes

    def check_models(self, student: nn.Module, teacher: Teacher | None, splits: DataSplits) -> None:
        """Student and teacher fit together (checked on one example, before the run folder exists)."""

    def prepare_run(self, config: RunConfig, splits: DataSplits, teacher: Teacher | None
                    ) -> tuple[DataSplits, Teacher | None]:
        """Last step before training (the run folder exists): may rewrite splits and teacher."""
        return splits, teacher

    def train_set(self, config: RunConfig, splits: DataSplits, teacher: Teacher | None, run_dir: Path,
                  fabric: Any) -> Dataset:
        """The training data (sequence KD replaces it by the teacher's completions)."""
        return splits.train

    def batch_transform(self, config: RunConfig):
        """``Trainer.fit(batch_transform=...)``: None, or e.g. on-policy GKD's mixer."""
        return None

    def final_metrics(self, config: RunConfig, run_dir: Path, student: nn.Module, teacher: nn.Module | None,
                      splits: DataSplits) -> dict:
        """The summary's test metrics; ``teacher`` is the model for agreement (None: a black-box teacher)."""
        raise NotImplementedError

    # ----- evaluation of finished models, export and latency -----

    def example_batch(self, splits: DataSplits, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """Model inputs of ``batch_size`` test samples (the keys of ``input_keys``), for export and latency."""
        items = [splits.test[i % len(splits.test)] for i in range(batch_size)]
        return {key: torch.stack([item[key] for item in items]) for key in self.input_keys}

    def evaluate(self, entries: list, data, teacher, eval_config) -> list:
        """``kdistill eval``: one result row (``kdistill.results.ModelRow``) per entry, the teacher first."""
        raise ConfigError(f"kdistill eval does not support task {self.name}; its run's summary.json holds the test "
                          "metrics")

    def row(self, metrics: dict) -> dict:
        """One result row from a run's metrics: the task's ``result_columns`` (absent metrics are None)."""
        return {column: metrics.get(column) for column in self.result_columns}


TASKS: Registry[type[Task]] = Registry("task")
