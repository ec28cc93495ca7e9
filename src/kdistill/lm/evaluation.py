"""``kdistill eval`` for causal language models: per-token loss, perplexity, next-token accuracy, top-1 agreement
with a teacher on the target tokens, size, latency of one sequence and throughput in tokens/s."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from kdistill.config import DataConfig, EvalConfig
from kdistill.data.base import DataSplits, load_data
from kdistill.errors import ModelError
from kdistill.evaluate import lm_test_metrics, speed_with
from kdistill.models.base import build_model
from kdistill.results import Row
from kdistill.tasks import Task

if TYPE_CHECKING:
    from kdistill.api import EvalEntry


def check_lm_vocabularies(entries: list[EvalEntry], teacher: EvalEntry | None, data: DataConfig,
                           num_classes: int) -> None:
    """Every model must predict the teacher's (and the data's) tokens: compare tokenizers and vocabulary sizes."""
    from kdistill.lm.tokenizer import BYTE_TOKENIZER_NAME, load_tokenizer
    from kdistill.lm.vocab import vocabulary_differences

    def tokenizer_name(name: str | None) -> str:
        return name or BYTE_TOKENIZER_NAME

    def vocab_size(entry: EvalEntry) -> int:
        return int(entry.model.kwargs.get("vocab_size", num_classes))

    if teacher is not None:  # first, so the message names the teacher
        for entry in entries:
            if (entry.tokenizer is not None and teacher.tokenizer is not None
                    and tokenizer_name(entry.tokenizer) != tokenizer_name(teacher.tokenizer)):
                problems = vocabulary_differences(load_tokenizer(teacher.tokenizer).get_vocab(),
                                                  load_tokenizer(entry.tokenizer).get_vocab())
                if problems:
                    raise ModelError(f"{entry.name} was trained with tokenizer {entry.tokenizer!r}, the teacher "
                                     f"{teacher.name} with {teacher.tokenizer!r}: " + "; ".join(problems)
                                     + "; top-1 agreement needs one vocabulary")
            if vocab_size(entry) != vocab_size(teacher):
                raise ModelError(f"{entry.name} has a vocabulary of {vocab_size(entry)} tokens but the teacher "
                                 f"{teacher.name} has {vocab_size(teacher)}; top-1 agreement needs one vocabulary "
                                 "(evaluate it without --teacher, or with a teacher of the same tokenizer)")
    data_tokenizer = tokenizer_name(data.tokenizer)
    for entry in [*([teacher] if teacher else []), *entries]:
        if entry.tokenizer is not None and tokenizer_name(entry.tokenizer) != data_tokenizer:
            problems = vocabulary_differences(load_tokenizer(data_tokenizer).get_vocab(),
                                              load_tokenizer(entry.tokenizer).get_vocab())
            if problems:
                raise ModelError(f"{entry.name} was trained with tokenizer {entry.tokenizer!r}, the eval data is "
                                 f"tokenized with {data_tokenizer!r}: " + "; ".join(problems))


def evaluate_lm(entries: list[EvalEntry], data: DataConfig, teacher: EvalEntry | None, eval_config: EvalConfig,
                task: Task) -> list[Row]:
    for entry in entries:
        if not entry.model.weights:
            raise ModelError(f"{entry.name}: no weights to evaluate")
    splits = load_data(data)
    check_lm_vocabularies(entries, teacher, data, splits.num_classes)
    rows, teacher_top1 = [], None
    if teacher is not None:
        teacher_model = build_model(teacher.model, splits.input_shape, splits.num_classes, role=teacher.name)
        row, teacher_top1 = evaluate_lm_model(teacher.name, teacher_model, splits, None, eval_config, task)
        rows.append(row)
    for entry in entries:
        model = build_model(entry.model, splits.input_shape, splits.num_classes, role=entry.name)
        rows.append(evaluate_lm_model(entry.name, model, splits, teacher_top1, eval_config, task)[0])
    return rows


LM_EVAL_BATCH = 32  # sequences per forward pass when scoring the test split


def evaluate_lm_model(
    name: str,
    model: nn.Module,
    splits: DataSplits,
    teacher_top1: torch.Tensor | None,
    eval_config: EvalConfig,
    task: Task,
) -> tuple[Row, torch.Tensor]:
    """One language model's row, and its (N, T) top-1 token ids on the test split (the teacher's serve agreement)."""
    metrics, top1 = lm_test_metrics(model, splits.test, task, teacher_top1, batch_size=LM_EVAL_BATCH,
                                    label=f"test: {name}")
    speed = speed_with(eval_config, model, splits.sample_input(), tokens=True)
    row = Row(name, dict(
        parameters=speed.parameters,
        size_bytes=speed.size_bytes,
        test_loss=metrics["test_loss"],
        perplexity=metrics["test_perplexity"],
        test_accuracy=metrics["test_accuracy"],
        agreement=metrics.get("test_agreement"),
        latency_ms=speed.latency_ms,
        tokens_per_s=speed.throughput,
    ))
    return row, top1
