"""The causal language-modelling task: ``model(input_ids=..., attention_mask=...) -> (B, T, V)`` logits, next-token
cross-entropy normalised per predicted token of the optimiser step (``kdistill.lm.task``), perplexity, token
agreement, and the LM options of a run (``kdistill.lm.pipeline``: a teacher with its own tokenizer, sequence-level KD,
on-policy GKD).

Classification methods (``kd``, ``dkd`` ...) are refused on this task (their ``tasks`` do not name it): they would
average over padding and ignore the per-token normalisation; the ``token_*`` methods and ``uld`` are their per-token,
masked counterparts.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from kdistill.lm.task import (
    IGNORE_INDEX,
    STEP_TOKENS_KEY,
    next_token_ce_sum,
    set_step_tokens,
    shift_for_next_token,
    target_mask,
    token_normaliser,
)
from kdistill.methods.base import ANY_INPUT, GENERATION
from kdistill.models.base import logits_of
from kdistill.tasks.base import Task


class CausalLMTask(Task):
    """Models are called as ``model(input_ids=..., attention_mask=...)``; logits are (B, T, V)."""

    name = "causal-lm"

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return logits_of(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))

    def loss_sum(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed next-token CE, token count): for trainers that normalise themselves."""
        return next_token_ce_sum(logits, batch["labels"])

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total, _ = next_token_ce_sum(logits, batch["labels"])
        return total / token_normaliser(batch, target_mask(batch["labels"]))

    def correct(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        shifted_logits, shifted_labels = shift_for_next_token(logits, batch["labels"])
        mask = shifted_labels != IGNORE_INDEX
        hits = (shifted_logits.argmax(-1) == shifted_labels) & mask
        return hits.sum(), int(mask.sum())

    def prepare_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> float:
        """Losses become sums over the step's tokens (see module docstring): no further division."""
        set_step_tokens(micro_batches)
        return 1.0

    def log_scale(self, batch: dict[str, torch.Tensor], count: int) -> float:
        return float(batch[STEP_TOKENS_KEY]) / max(count, 1) if STEP_TOKENS_KEY in batch else 1.0

    def agreement(self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, int]:
        """Top-1 next-token agreement on the target positions."""
        mask = target_mask(batch["labels"])
        same = (logits[:, :-1].argmax(-1) == teacher_logits[:, :-1].argmax(-1)) & mask
        return same.sum(), int(mask.sum())

    # ----- run assembly -----

    input_keys: ClassVar[tuple[str, ...]] = ("input_ids", "attention_mask")
    per_position = True
    result_columns: ClassVar[tuple[str, ...]] = (
        "test_loss", "test_perplexity", "test_accuracy", "test_agreement", "teacher_test_perplexity",
    )

    def __init__(self) -> None:
        self.lm = None  # kdistill.lm.pipeline.LMSetup of a distillation from a teacher model (prepare_data)

    def check_config(self, config, distilling: bool):
        return config  # distill.on_policy and distill.sequence_kd belong to this task

    def teacher_needs(self, config) -> dict[str, str]:
        needs = {}
        if config.distill.sequence_kd is not None:
            needs[GENERATION] = "distill.sequence_kd"  # the teacher writes the training text
        if config.distill.on_policy is not None:
            needs[ANY_INPUT] = "distill.on_policy"  # the teacher scores the student's fresh samples
        return needs

    def prepare_data(self, config, splits, distilling: bool):
        from kdistill.config import ModelTeacherConfig
        from kdistill.lm.pipeline import setup_lm

        if distilling and isinstance(config.teacher, ModelTeacherConfig):  # stored outputs are in the student's tokens
            self.lm = setup_lm(config, splits)
        return splits

    def teacher_num_classes(self, splits) -> int:
        vocabulary = self.lm.teacher_num_classes if self.lm is not None else None
        return vocabulary or splits.num_classes

    def train_set(self, config, splits, teacher, run_dir: Path, fabric):
        if config.distill.sequence_kd is None:
            return splits.train
        from kdistill.lm.pipeline import sequence_kd_train_set

        return sequence_kd_train_set(config, self.lm, teacher.model, splits.train, run_dir, fabric)

    def batch_transform(self, config):
        from kdistill.lm.pipeline import on_policy_transform

        return on_policy_transform(config, self.lm) if self.lm is not None else None

    def final_metrics(self, config, run_dir: Path, student: nn.Module, teacher: nn.Module | None, splits) -> dict:
        """Per-token loss, perplexity, next-token accuracy and top-1 agreement on the test split; across
        tokenizers there is no token agreement, only the teacher's perplexity in its own tokens."""
        from kdistill.evaluate import perplexity, task_metrics
        from kdistill.lm.pipeline import cross_tokenizer_teacher_metrics

        batch_size = config.trainer.eval_batch_size
        cross = self.lm is not None and self.lm.cross_tokenizer
        metrics = task_metrics(student, splits.test, self, None if cross else teacher, batch_size,
                               label="test: student")
        metrics["test_perplexity"] = perplexity(metrics["test_loss"])
        if teacher is not None and cross:
            metrics.update(cross_tokenizer_teacher_metrics(teacher, splits.test, self, batch_size))
        elif teacher is not None:
            teacher_metrics = task_metrics(teacher, splits.test, self, None, batch_size, label="test: teacher")
            metrics["teacher_test_perplexity"] = perplexity(teacher_metrics["test_loss"])
        return metrics

    def example_batch(self, splits, batch_size: int = 1) -> dict[str, torch.Tensor]:
        """``batch_size`` copies of one full ``max_length`` sequence, every position attended (latency, export)."""
        ids = splits.test[0]["input_ids"].long()
        return {"input_ids": ids.expand(batch_size, -1).contiguous(),
                "attention_mask": torch.ones(batch_size, ids.shape[0], dtype=torch.long)}

    def evaluate(self, entries: list, data, teacher, eval_config) -> list:
        from kdistill.lm.evaluation import evaluate_lm

        return evaluate_lm(entries, data, teacher, eval_config, self)
