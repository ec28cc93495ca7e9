"""Shared machinery of the feature methods: layer pairs (explicit or ``auto``), shapes, adapters.

A feature method takes ``pairs``: a list of ``[student_module, teacher_module]`` or ``"auto"``. ``prepare``
resolves ``auto`` from the models' layer shapes, runs one forward of each model on the sample batch to learn the
paired features' shapes, and builds an adapter per pair when the method compares the features directly.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from kdistill.adapters import build_adapter
from kdistill.errors import ConfigError, ModelError
from kdistill.layers import embedding_pair, propose_pairs
from kdistill.methods.base import FEATURES, Method, MethodContext
from kdistill.models.base import logits_of
from kdistill.outputs import ModelOutputs
from kdistill.taps import FeatureTaps

AutoPairs = Literal["stages", "middle", "last", "embedding"]
Shape = tuple[int, ...]


def parse_pairs(method: str, pairs: object) -> list[tuple[str, str]] | None:
    """Validate the ``pairs`` option; None means ``auto``."""
    if pairs == "auto":
        return None
    where = f"distill.method_options.{method}.pairs"
    valid = isinstance(pairs, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) and n for n in p) for p in pairs
    )
    if not valid:
        raise ConfigError(f"{where} must be 'auto' or a list of [student_module, teacher_module], got {pairs!r}")
    if not pairs:
        raise ConfigError(f"{where} is empty: {method} needs at least one [student_module, teacher_module] pair "
                          "(or 'auto'; `kdistill layers TEACHER STUDENT` proposes some)")
    return [(str(s), str(t)) for s, t in pairs]


def feature_shapes(model: nn.Module, names: list[str], sample_input: torch.Tensor, role: str) -> dict[str, Shape]:
    """One eval-mode forward with taps on ``names``; per-sample output shapes by name."""
    taps = FeatureTaps(model, names, role=role)  # raises ModelError for unknown module names
    sample_input = sample_input.to(next(model.parameters(), sample_input).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits_of(model(sample_input))
        return {name: tuple(feature.shape[1:]) for name, feature in taps.collect().items()}
    finally:
        model.train(was_training)
        taps.remove()


class FeatureMethod(Method):
    """Base of methods that compare paired intermediate features.

    Subclasses set ``auto_pairs`` (which layers ``auto`` picks) and ``adapt`` (``full``: map the student feature
    to the teacher's shape; ``spatial``: only the resolution; None: no adapter, any shapes).
    """

    auto_pairs: ClassVar[AutoPairs] = "stages"
    adapt: ClassVar[Literal["full", "spatial"] | None] = "full"
    needs = frozenset({FEATURES})
    needs_teacher_shapes: ClassVar[bool] = True  # False: a cached teacher need not report its feature shapes

    def __init__(self, pairs: list[list[str]] | str = "auto") -> None:
        super().__init__()
        self._pairs = parse_pairs(self.name, pairs)
        self.adapters = nn.ModuleList()
        self.student_shapes: list[Shape] = []
        self.teacher_shapes: list[Shape] = []

    @property
    def pairs(self) -> list[tuple[str, str]]:
        if self._pairs is None:
            raise RuntimeError(f"{self.name}: pairs are 'auto'; call prepare() before asking for taps")
        return self._pairs

    def student_taps(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.pairs))

    def teacher_taps(self) -> list[str]:
        return list(dict.fromkeys(t for _, t in self.pairs))

    def prepare(self, context: MethodContext) -> None:
        if self._pairs is None:
            self._pairs = self._auto(context)
        sample_input = context.sample_batch["input"]
        student = feature_shapes(context.student, self.student_taps(), sample_input, role="student")
        self.student_shapes = [student[s] for s, _ in self.pairs]
        if context.teacher is None and context.teacher_sample_outputs is None and not self.needs_teacher_shapes:
            self.teacher_shapes = []  # relational losses take any teacher width; nothing to size
        else:
            teacher = self._teacher_shapes(context)
            self.teacher_shapes = [teacher[t] for _, t in self.pairs]
        if self.adapt is not None:
            device = next(context.student.parameters(), torch.empty(0)).device
            self.adapters = nn.ModuleList(
                build_adapter(s_shape, t_shape, self.adapt, where=f"{self.name} pair {list(pair)}")
                for pair, s_shape, t_shape in zip(self.pairs, self.student_shapes, self.teacher_shapes, strict=True)
            ).to(device)
        self.build(context)

    def build(self, context: MethodContext) -> None:
        """Hook for subclasses that own more than adapters (CRD's heads and memory). Shapes are known here."""

    def _auto(self, context: MethodContext) -> list[tuple[str, str]]:
        if context.teacher is None:
            raise ConfigError(f"distill.method_options.{self.name}.pairs: 'auto' needs the teacher model, but the "
                              "teacher is a cache; give pairs explicitly as [[student_module, teacher_module]]")
        sample_input = context.sample_batch["input"]
        if self.auto_pairs == "embedding":
            return [embedding_pair(context.student, context.teacher, sample_input)]
        stages = propose_pairs(context.student, context.teacher, sample_input)
        if self.auto_pairs == "middle":
            return [stages[len(stages) // 2]]
        if self.auto_pairs == "last":
            return [stages[-1]]
        return stages

    def _teacher_shapes(self, context: MethodContext) -> dict[str, Shape]:
        if context.teacher is not None:
            return feature_shapes(context.teacher, self.teacher_taps(), context.sample_batch["input"], role="teacher")
        outputs = context.teacher_sample_outputs
        missing = [t for t in self.teacher_taps() if outputs is None or t not in outputs.features]
        if missing:
            raise ConfigError(f"{self.name}: the cached teacher has no features {missing}; rebuild the cache with "
                              "these taps (the trainer passes the cached outputs as teacher_sample_outputs)")
        return {t: tuple(outputs.features[t].shape[1:]) for t in self.teacher_taps()}

    def paired_features(self, student: ModelOutputs, teacher: ModelOutputs
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(adapted student feature, teacher feature) per pair, in float32."""
        if self.adapt is not None and len(self.adapters) != len(self.pairs):
            raise RuntimeError(f"{self.name}: adapters are not built; call prepare() before the first step")
        out = []
        for index, (s_name, t_name) in enumerate(self.pairs):
            for role, outputs, name in (("student", student, s_name), ("teacher", teacher, t_name)):
                if name not in outputs.features:
                    raise ModelError(f"{self.name}: {role} feature {name!r} missing from the outputs (was it tapped?)")
            f_s = student.features[s_name]
            if self.adapt is not None:
                f_s = self.adapters[index](f_s)
            out.append((f_s.float(), teacher.features[t_name].detach().float()))  # teacher: no gradient, ever
        return out
