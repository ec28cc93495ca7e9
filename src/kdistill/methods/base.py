"""The method interface: student and teacher outputs in, named loss terms out.

A method declares what it needs: the tasks whose outputs it understands (``tasks``), the teacher capabilities it
reads (``needs``: ``logits``, ``features``), and the features by module name (taps in the student and the teacher);
the trainer taps them and passes them in ``ModelOutputs.features``. A teacher declares what it ``provides``; the run
checks both sides once, before anything is built (``check_teacher_capabilities``). A method may own trainable parts
(shape adapters): they train with the student, are saved under their own key, and are never exported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from kdistill.errors import ConfigError
from kdistill.outputs import ModelOutputs
from kdistill.registry import Registry

# Teacher capabilities (``Method.needs``, ``Teacher.provides``, ``Task.teacher_needs``).
LOGITS = "logits"  # the task's outputs per training sample (class or token logits up to a shift, embeddings)
FEATURES = "features"  # intermediate outputs by module name (forward taps on a model kdistill runs)
ANY_INPUT = "any-input"  # outputs for inputs it has never seen (val/test, the student's samples): a live model
GENERATION = "generation"  # writes text (sequence-level KD)
CAPABILITY_WORDS = {LOGITS: "logits", FEATURES: "intermediate features", ANY_INPUT: "outputs on new inputs",
                    GENERATION: "text generation"}


@dataclass
class MethodContext:
    """What a method may look at once, before training, to resolve layer pairs and size its adapters."""

    student: nn.Module
    teacher: nn.Module | None  # None when the teacher is a cache or a black box
    sample_batch: dict[str, torch.Tensor]
    num_classes: int
    num_train_samples: int  # size of the training set (memory banks index it with batch["index"])
    # The teacher's outputs on sample_batch, for sizing adapters when ``teacher`` is None (a cache holds features).
    teacher_sample_outputs: ModelOutputs | None = None


class Method(nn.Module):
    """Base class. Subclasses set ``name`` and implement ``forward``."""

    name: ClassVar[str] = ""
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})  # tasks whose outputs this method understands
    needs: ClassVar[frozenset[str]] = frozenset({LOGITS})  # teacher capabilities it reads
    cross_tokenizer: ClassVar[bool] = False  # True: works when teacher and student tokenizers differ (uld)

    def student_taps(self) -> list[str]:
        """Student module names whose outputs this method needs."""
        return []

    def teacher_taps(self) -> list[str]:
        """Teacher module names whose outputs this method needs."""
        return []

    def prepare(self, context: MethodContext) -> None:
        """Called once before the optimiser is built (resolve ``pairs: auto``, build adapters). Default: nothing."""

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (0-based), for schedules such as DKD's warm-up."""

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def check_teacher_capabilities(methods: dict[str, Method], kind: str, provides: frozenset[str],
                               others: dict[str, str] | None = None) -> None:
    """One ConfigError naming the first method (or run option) whose needs this teacher kind does not provide."""
    wanted = [(f"method {name!r}", need) for name, method in methods.items() for need in sorted(method.needs)]
    wanted += [(what, need) for need, what in (others or {}).items()]
    for what, need in wanted:
        if need not in provides:
            offered = ", ".join(CAPABILITY_WORDS[p] for p in sorted(provides)) or "nothing"
            raise ConfigError(f"{what} needs the teacher's {CAPABILITY_WORDS[need]}, which a teacher of kind "
                              f"{kind!r} does not provide (it provides: {offered}); use teacher kind 'model'"
                              + (" or other methods" if what.startswith("method") else ""))


# name -> class; classes are built as ``cls(temperature=..., num_classes=..., **options)``.
METHODS: Registry[type[Method]] = Registry("distillation method")


def build_method(name: str, temperature: float, num_classes: int, options: dict[str, Any] | None = None) -> Method:
    """Instantiate a registered method; ``temperature``/``num_classes`` are passed to methods that take them, and
    ``options`` (``distill.method_options.<name>``) override them, e.g. a per-method ``temperature``."""
    cls = METHODS.get(name)
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in {"temperature": temperature, "num_classes": num_classes}.items() if k in params}
    options = dict(options or {})
    unknown = [k for k in options if k not in params or k == "self"]
    if unknown:
        known = [p for p in params if p not in ("self", "num_classes")]
        raise ConfigError(f"distill.method_options.{name}: unknown option(s) {unknown}; {name} takes {known}")
    temperature_option = options.get("temperature", 1.0)
    if not (isinstance(temperature_option, (int, float)) and temperature_option > 0):
        raise ConfigError(f"distill.method_options.{name}.temperature must be > 0, got {options['temperature']!r}")
    try:
        return cls(**{**kwargs, **options})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"distill.method_options.{name}: {exc}") from None
