"""``teacher: {kind: model, name: ...}``: a model kdistill builds from any model source and runs on every batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill.errors import ConfigError
from kdistill.methods.base import ANY_INPUT, FEATURES, GENERATION, LOGITS
from kdistill.outputs import ModelOutputs
from kdistill.taps import FeatureTaps
from kdistill.teachers.base import FrozenModule, teacher_view

if TYPE_CHECKING:
    from kdistill.tasks.base import Task


class LiveTeacher:
    """A frozen model run on every batch under ``torch.no_grad`` (not inference_mode: its tensors would break
    feature losses that save inputs for backward). It reads the batch's ``teacher_*`` keys when present."""

    provides = frozenset({LOGITS, FEATURES, ANY_INPUT, GENERATION})

    def __init__(self, model: nn.Module, feature_names: list[str] | None = None, task: Task | None = None) -> None:
        from kdistill.tasks import ClassificationTask

        self.model = model
        self.module = FrozenModule(model)
        self.task = task or ClassificationTask()
        self.taps = None
        self.tap(feature_names or [])

    @classmethod
    def from_config(cls, config, splits, task: Task) -> LiveTeacher:
        """Build ``config.teacher`` (weights required unless the source ships its own, e.g. minilm)."""
        from kdistill.models.base import MODEL_SOURCES, build_model

        teacher_config = config.teacher
        ships_weights = getattr(MODEL_SOURCES.get(teacher_config.name.partition(":")[0]), "ships_weights", False)
        if not teacher_config.weights and not teacher_config.pretrained and not ships_weights:
            raise ConfigError(
                "teacher.weights is required: a teacher with random weights teaches nothing "
                "(train one with `kdistill train`, then pass its student.safetensors)"
            )
        model = build_model(teacher_config, splits.input_shape, task.teacher_num_classes(splits), role="teacher")
        return cls(model, task=task)

    def tap(self, names: list[str]) -> None:
        if self.taps is not None:
            self.taps.remove()
        self.taps = FeatureTaps(self.model, list(names), role="teacher") if names else None

    def to(self, device: torch.device) -> LiveTeacher:
        self.module.to(device)
        return self

    @torch.no_grad()
    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        logits = self.task.logits(self.module, teacher_view(batch))
        features = self.taps.collect() if self.taps else {}
        return ModelOutputs(logits=logits.float(), features=features)

    def probe(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        device = next(self.model.parameters(), torch.empty(0)).device
        return self.outputs({key: value.to(device) for key, value in batch.items()})

    def train_dataset(self, dataset: Dataset) -> Dataset:
        return dataset

    def metrics_model(self) -> nn.Module:
        return self.model

    def close(self) -> None:
        if self.taps:
            self.taps.remove()
            self.taps = None
