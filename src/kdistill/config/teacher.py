"""The ``teacher`` section: a union on ``kind`` (model, cache, soft-labels) and the old untyped forms mapped onto it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from kdistill.config.base import Section, format_validation_error
from kdistill.config.models import ModelConfig
from kdistill.errors import ConfigError


class ModelTeacherConfig(ModelConfig):
    """``kind: model``: a teacher kdistill runs itself, from any model source (the default kind)."""

    kind: Literal["model"] = "model"


class CacheTeacherConfig(Section):
    """``kind: cache``: the stored outputs of a teacher (a store made by ``kdistill cache build``)."""

    kind: Literal["cache"]
    dir: str = Field(..., description="the store's folder (kdistill cache build --dir)")
    weights: str | None = Field(
        None, description="optional: the teacher weights the store must have been built from (checked); also used "
        "for the final agreement metrics (default: the weights the store's manifest records)"
    )


class SoftLabelsTeacherConfig(Section):
    """``kind: soft-labels``: a black-box teacher, a file of per-sample logits or probabilities on the training split.

    ``.npy`` (one (N, C) array), ``.npz`` (array ``key``, ids in array ``id_column``) or ``.parquet`` (column ``key``
    holding one list of C floats per row, ids in column ``id_column``). Without ``id_column`` row i belongs to
    training sample i; with it the ids must be exactly the training samples' indices 0..N-1, in any order.
    """

    kind: Literal["soft-labels"]
    path: str = Field(..., description="the file: .npy, .npz or .parquet")
    values: Literal["logits", "probabilities"] = Field("logits", description="what the file holds per class")
    key: str | None = Field(None, description="npz array / parquet column of the values (default: `values`)")
    id_column: str | None = Field(None, description="npz array / parquet column of sample ids (None: by row)")


TeacherConfig = Annotated[
    Union[ModelTeacherConfig, CacheTeacherConfig, SoftLabelsTeacherConfig], Field(discriminator="kind")  # noqa: UP007
]
_TEACHER_ADAPTER: TypeAdapter = TypeAdapter(TeacherConfig)
LEGACY_CACHE_PREFIX = "cache:"  # old form: teacher.name: cache:<dir>


def legacy_teacher_tree(value: Any) -> Any:
    """Old teacher mappings -> the typed form: ``{name: cache:DIR, weights?}`` becomes ``kind: cache`` (kwargs and
    other model keys are dropped: a store needs none; also over a saved ``kind: model``, as ``--set
    teacher.name=cache:DIR`` on a resolved config gives), any other mapping without ``kind`` is ``kind: model``."""
    if isinstance(value, BaseModel) and not hasattr(value, "kind"):
        value = value.model_dump()
    if not isinstance(value, dict) or value.get("kind", "model") != "model":
        return value
    name = value.get("name")
    if isinstance(name, str) and name.startswith(LEGACY_CACHE_PREFIX):  # no model source is called "cache"
        return {"kind": "cache", "dir": name.removeprefix(LEGACY_CACHE_PREFIX), "weights": value.get("weights")}
    return {**value, "kind": "model"}


def typed_teacher(value: Any):
    """Any teacher config (a typed one, an old ``ModelConfig``, a mapping) -> a TeacherConfig, or None."""
    if value is None or (isinstance(value, BaseModel) and hasattr(value, "kind")):  # already typed
        return value
    try:
        return _TEACHER_ADAPTER.validate_python(legacy_teacher_tree(value))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "teacher")) from None
