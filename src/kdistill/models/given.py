"""``nn.Module`` objects passed to ``api.distill`` / ``api.train`` instead of model names (as Hugging Face's Trainer
and TRL's trainers take them).

The run's config.yaml names such a model ``module:<ClassName>``: a module cannot be re-created from a name, so
``--resume``, ``kdistill eval`` and ``load_model`` refuse it with a one-line error unless the module is passed
again (``api.distill(config, student=module, resume=True)``). The student is trained in place; its final weights
are saved to ``student.safetensors`` like any other run's (load them into your own module with
``kdistill.models.load_weights``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from kdistill.config import ModelConfig, RunConfig
from kdistill.errors import ConfigError, ModelError
from kdistill.models.base import MODEL_SOURCES, ModelRequest, build_model, check_model_io

GIVEN_SOURCE = "module"


@dataclass(frozen=True)
class GivenModels:
    """The modules a caller passed (None: build that model from the config)."""

    student: nn.Module | None = None
    teacher: nn.Module | None = None

    def __post_init__(self) -> None:
        for role, module in (("student", self.student), ("teacher", self.teacher)):
            if module is not None and not isinstance(module, nn.Module):
                raise ConfigError(f"{role} must be a torch.nn.Module, got {type(module).__name__}")

    def recorded_in(self, config: RunConfig) -> RunConfig:
        """The config naming each given module ``module:<ClassName>`` (what config.yaml records)."""
        update = {role: ModelConfig(name=f"{GIVEN_SOURCE}:{type(module).__name__}")
                  for role, module in (("student", self.student), ("teacher", self.teacher)) if module is not None}
        return config.model_copy(update=update) if update else config

    def checked(self, role: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module | None:
        """The given module of ``role`` after the same input/output check a built model gets; None if not given."""
        module = self.student if role == "student" else self.teacher
        if module is not None:
            check_model_io(module, input_shape, num_classes, role=f"{role} ({type(module).__name__})")
        return module


def is_given(model: ModelConfig) -> bool:
    return model.name.partition(":")[0] == GIVEN_SOURCE


def fresh_copy(model: ModelConfig, trained: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A second instance of the student (to load its best checkpoint into): a copy of a given module, since it
    cannot be rebuilt from its name."""
    if is_given(model):
        return copy.deepcopy(trained)
    return build_model(model, input_shape, num_classes, role="student")


@MODEL_SOURCES.register(GIVEN_SOURCE)
def _not_rebuildable(request: ModelRequest) -> nn.Module:
    raise ModelError(
        f"model module:{request.argument} was an nn.Module passed to kdistill's Python API; it cannot be rebuilt "
        "from config.yaml: pass the module again (api.distill(config, student=..., teacher=..., resume=True)), or "
        "load student.safetensors into your module with kdistill.models.load_weights"
    )
