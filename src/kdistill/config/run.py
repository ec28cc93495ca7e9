"""``RunConfig``: every section of a run together, with the checks that span sections, and the run name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from kdistill.config.base import SEED_LIMIT, Section
from kdistill.config.data import DataConfig
from kdistill.config.deploy import DeployConfig
from kdistill.config.distill import DistillConfig
from kdistill.config.models import ModelConfig
from kdistill.config.teacher import TeacherConfig, legacy_teacher_tree
from kdistill.config.training import EvalConfig, OptimConfig, TrainerConfig


class RunConfig(Section):
    """Everything a run needs. ``teacher`` is None for plain supervised training."""

    name: str = Field("run", description="run folder name under output_dir")
    task: str = Field("classification", description="classification | causal-lm | embedding")
    output_dir: str = Field("runs", description="parent folder of run folders")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="training seed (initialisation, shuffling, augmentation), "
                      "in [0, 2^32)")
    data: DataConfig = Field(default_factory=DataConfig)
    student: ModelConfig = Field(default_factory=lambda: ModelConfig(name="mlp"), description="the model trained")
    teacher: TeacherConfig | None = Field(None, description="the teacher, by kind (null: plain training)")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)

    @field_validator("teacher", mode="before")
    @classmethod
    def _legacy_teacher(cls, value: Any) -> Any:
        return legacy_teacher_tree(value)

    @model_validator(mode="after")
    def _validation_split_needed(self) -> RunConfig:
        # A run, not a data set, needs validation: the best checkpoint is chosen on it ("best val epoch").
        if not self.data.val_fraction > 0:
            raise ValueError(f"data.val_fraction must be > 0, got {self.data.val_fraction}: the best checkpoint "
                             "(checkpoints/best, summary.json best_epoch) is chosen on the validation split; "
                             "use e.g. 0.1")
        return self

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_run_name(value)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: joined to output_dir it must stay a child of it."""
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or Path(name).is_absolute() or name != name.strip())
    if bad:
        raise ValueError(f"run name {name!r} must be a plain folder name (no path separators, not '.' or '..', "
                         "not empty); put the parent folder in output_dir")
    return name
