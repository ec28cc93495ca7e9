"""Typed run configuration: one YAML format for train, distill and eval.

Unknown keys and bad values are errors naming the key. Dotted overrides (``trainer.epochs=5``) come from the
CLI; the resolved config is written into the run folder so any run can be repeated exactly.

One module per group of sections: ``data``, ``models`` (student and teacher models), ``teacher`` (the union on
``kind``), ``distill``, ``training`` (optim, trainer, eval), ``deploy`` (deploy, prune), ``run`` (``RunConfig``),
``load`` (YAML, ``--set`` overrides); ``base`` holds what they share. Import the names from ``kdistill.config``.
"""

from __future__ import annotations

from kdistill.config.base import SEED_LIMIT, validation_problems
from kdistill.config.data import DataConfig
from kdistill.config.deploy import DeployConfig, PruneConfig
from kdistill.config.distill import DistillConfig, OnPolicyConfig, SequenceKDConfig, StageConfig
from kdistill.config.load import dump_config, load_config, parse_override, read_text
from kdistill.config.models import ModelConfig
from kdistill.config.run import RunConfig, check_run_name
from kdistill.config.teacher import (
    LEGACY_CACHE_PREFIX,
    CacheTeacherConfig,
    ModelTeacherConfig,
    SoftLabelsTeacherConfig,
    TeacherConfig,
    legacy_teacher_tree,
    typed_teacher,
)
from kdistill.config.training import ACCELERATORS, PRECISIONS, STRATEGIES, EvalConfig, OptimConfig, TrainerConfig

__all__ = [
    "ACCELERATORS", "LEGACY_CACHE_PREFIX", "PRECISIONS", "SEED_LIMIT", "STRATEGIES",
    "CacheTeacherConfig", "DataConfig", "DeployConfig", "DistillConfig", "EvalConfig", "ModelConfig",
    "ModelTeacherConfig", "OnPolicyConfig", "OptimConfig", "PruneConfig", "RunConfig", "SequenceKDConfig",
    "SoftLabelsTeacherConfig", "StageConfig", "TeacherConfig", "TrainerConfig",
    "check_run_name", "dump_config", "legacy_teacher_tree", "load_config", "parse_override", "read_text",
    "typed_teacher", "validation_problems",
]
