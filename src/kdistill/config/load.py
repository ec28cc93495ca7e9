"""Reading a config: YAML file, keyword defaults and dotted ``--set`` overrides, validated into a RunConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kdistill.config.base import format_validation_error, validation_problems
from kdistill.config.run import RunConfig
from kdistill.errors import ConfigError
from kdistill.safe_yaml import load_yaml


def parse_override(text: str) -> tuple[list[str], Any]:
    """``trainer.epochs=5`` -> (["trainer", "epochs"], 5). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value, e.g. trainer.epochs=5")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(part.strip() for part in keys):
        raise ConfigError(f"override {text!r} has an empty key")
    return keys, load_yaml(raw, f"the value of --set {key.strip()}") if raw.strip() else None


def _set_dotted(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **base: Any) -> RunConfig:
    """Read YAML (optional), apply dotted overrides, validate. Raises ConfigError naming the bad key."""
    tree: dict[str, Any] = dict(base)
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        loaded = load_yaml(read_text(path, "config file"), f"config file {str(path)!r}") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys, got {type(loaded).__name__}")
        tree = {**loaded, **tree}
        source = str(path)
    for text in overrides or []:
        keys, value = parse_override(text)
        _set_dotted(tree, keys, value)
    student = tree.get("student")
    if isinstance(student, dict) and "name" not in student:  # `student.kwargs=...` keeps the default student
        tree["student"] = {"name": RunConfig().student.name, **student}
    teacher = tree.get("teacher")
    if isinstance(teacher, dict) and "name" not in teacher and Path(str(teacher.get("weights"))).is_dir():
        tree["teacher"] = {"name": teacher["weights"], **teacher}  # `--teacher-weights runs/t`: that run's model
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        error = ConfigError(format_validation_error(exc, source))
        error.problems = validation_problems(exc)  # one line each, for `kdistill check`
        raise error from None


def read_text(path: Path, what: str) -> str:
    """A text file's contents; unreadable or binary (not UTF-8) is a ConfigError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc}") from None


def dump_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
