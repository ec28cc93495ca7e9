"""Classification: ``model(input) -> (B, C)`` logits, cross-entropy, accuracy, agreement, calibration (ECE)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from kdistill.data.transfer import HIDDEN_TARGET, masked_task_loss
from kdistill.models.base import logits_of
from kdistill.tasks.base import Task


class ClassificationTask(Task):
    name = "classification"
    class_accuracy = True
    int8_methods = ("static", "dynamic", "qat")  # calibration and top-1 parity are defined for class logits
    result_columns: ClassVar[tuple[str, ...]] = (
        "test_accuracy", "test_accuracy_best", "test_agreement", "test_ece", "teacher_test_accuracy",
    )

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return logits_of(model(batch["input"]))

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_task_loss(logits, batch)  # transfer sets: labelled items only; mixup: the mixed labels

    def correct(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return (logits.argmax(-1) == batch["target"]).sum(), int(batch["target"].numel())  # hidden -1: never a hit

    def scored(self, batch: dict[str, torch.Tensor], count: int) -> int:
        return int((batch["target"] != HIDDEN_TARGET).sum())  # a transfer set's unlabelled items have no answer

    def agreement(self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, int]:
        return (logits.argmax(-1) == teacher_logits.argmax(-1)).sum(), int(logits.shape[0])

    def final_metrics(self, config, run_dir: Path, student: nn.Module, teacher: nn.Module | None, splits) -> dict:
        """Test accuracy of the last and the best-validation student, agreement with the teacher, ECE."""
        from kdistill.evaluate import accuracy, agreement, expected_calibration_error, predict
        from kdistill.models.given import fresh_copy
        from kdistill.models.weights import load_weights
        from kdistill.runs import STUDENT_WEIGHTS

        batch_size = config.trainer.eval_batch_size
        logits, targets = predict(student, splits.test, batch_size, self, label="test: student")
        metrics = {
            "test_accuracy": accuracy(logits, targets),
            "test_ece": expected_calibration_error(logits, targets, config.eval.ece_bins),
        }
        best_weights = run_dir / "checkpoints/best" / STUDENT_WEIGHTS
        if best_weights.is_file():
            best = fresh_copy(config.student, student, splits.input_shape, splits.num_classes)  # a given module too
            load_weights(best, best_weights, role="student")
            best_logits, _ = predict(best, splits.test, batch_size, self, label="test: best-val student")
            metrics["test_accuracy_best"] = accuracy(best_logits, targets)
        if teacher is not None:
            teacher_logits, _ = predict(teacher, splits.test, batch_size, self, label="test: teacher")
            metrics["teacher_test_accuracy"] = accuracy(teacher_logits, targets)
            metrics["test_agreement"] = agreement(logits, teacher_logits)
        return metrics

    def evaluate(self, entries: list, data, teacher, eval_config) -> list:
        from kdistill.data.base import load_data
        from kdistill.errors import ModelError
        from kdistill.models.base import build_model

        splits = load_data(data)
        rows, teacher_logits = [], None
        if teacher is not None:
            teacher_model = build_model(teacher.model, splits.input_shape, splits.num_classes, role=teacher.name)
            row, teacher_logits = self.evaluate_model(teacher.name, teacher_model, splits, None, eval_config)
            rows.append(row)
        for entry in entries:
            if not entry.model.weights:
                raise ModelError(f"{entry.name}: no weights to evaluate")
            model = build_model(entry.model, splits.input_shape, splits.num_classes, role=entry.name)
            rows.append(self.evaluate_model(entry.name, model, splits, teacher_logits, eval_config)[0])
        return rows

    def evaluate_model(self, name: str, model: nn.Module, splits, teacher_logits: torch.Tensor | None, eval_config):
        """(this model's row, its test logits): accuracy, agreement, ECE, size, batch-1 latency, throughput."""
        from kdistill.evaluate import accuracy, agreement, expected_calibration_error, predict, speed_with
        from kdistill.results import Row

        logits, targets = predict(model, splits.test, task=self, label=f"test: {name}")
        speed = speed_with(eval_config, model, splits.sample_input())
        row = Row(name, dict(
            parameters=speed.parameters,
            size_bytes=speed.size_bytes,
            test_accuracy=accuracy(logits, targets),
            agreement=None if teacher_logits is None else agreement(logits, teacher_logits),
            ece=expected_calibration_error(logits, targets, eval_config.ece_bins),
            latency_ms=speed.latency_ms,
            throughput=speed.throughput,
        ))
        return row, logits
