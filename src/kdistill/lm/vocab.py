"""Teacher and student must share a vocabulary for token-level KD: check it early and say how they differ.

Only Universal Logit Distillation (method ``uld``, Boizard et al. 2024) works across tokenizers; choosing it
skips the check.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from kdistill.errors import ModelError
from kdistill.lm.tokenizer import TextTokenizer


def any_cross_tokenizer(methods: Iterable[str]) -> bool:
    """True when one of the named methods declares ``cross_tokenizer`` (works across vocabularies, e.g. ``uld``)."""
    from kdistill.methods.base import METHODS  # here: the methods import this module

    return any(name in METHODS and METHODS.get(name).cross_tokenizer for name in methods)


def vocabulary_differences(teacher: dict[str, int], student: dict[str, int], limit: int = 5) -> list[str]:
    """Human-readable differences between two token -> id maps (empty when identical)."""
    problems = []
    if len(teacher) != len(student):
        problems.append(f"sizes differ: teacher {len(teacher)} tokens, student {len(student)}")
    teacher_by_id = {i: t for t, i in teacher.items()}
    student_by_id = {i: t for t, i in student.items()}
    differing = [i for i in sorted(set(teacher_by_id) | set(student_by_id))
                 if teacher_by_id.get(i) != student_by_id.get(i)]
    if differing:
        shown = ", ".join(f"id {i}: teacher {teacher_by_id.get(i)!r} vs student {student_by_id.get(i)!r}"
                          for i in differing[:limit])
        problems.append(f"{len(differing)} ids map to different tokens (first: {shown})")
    return problems


def check_tokenizers(teacher: TextTokenizer, student: TextTokenizer, methods: Iterable[str] = ()) -> None:
    """Raise ModelError if the vocabularies differ, unless a cross-tokenizer method (``uld``) is used."""
    if any_cross_tokenizer(methods):
        return
    problems = vocabulary_differences(teacher.get_vocab(), student.get_vocab())
    if problems:
        raise ModelError(f"teacher tokenizer {teacher.name!r} and student tokenizer {student.name!r} differ: "
                         + "; ".join(problems) + ". Token-level KD needs one vocabulary: use the teacher's tokenizer "
                         "for the student, or the cross-tokenizer method 'uld'")


def check_model_vocab_sizes(teacher_size: int, student_size: int, methods: Iterable[str] = ()) -> None:
    """Embedding-table sizes of the two models (``model.config.vocab_size``)."""
    if teacher_size != student_size and not any_cross_tokenizer(methods):
        raise ModelError(f"teacher vocabulary has {teacher_size} tokens but the student's has {student_size}; "
                         "build both with the same tokenizer, or use the cross-tokenizer method 'uld'")


def check_same_vocab_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, method: str) -> None:
    """Per-step check inside token methods: (B, T, V) logits of both models must have the same shape."""
    if student_logits.shape != teacher_logits.shape:
        raise ModelError(f"{method}: student logits {tuple(student_logits.shape)} vs teacher logits "
                         f"{tuple(teacher_logits.shape)}; token-level KD needs the same tokens and vocabulary "
                         "(use method 'uld' across tokenizers)")
