"""``kdistill config --explain``: the resolved config as YAML with every field's description as a comment.

The output is still valid YAML that loads back into the same config, so a user can save it and edit it.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel


def description_of(model: type[BaseModel], key: str) -> str:
    """A field's description; for a nested config without one, the first line of its class docstring."""
    field = model.model_fields[key]
    if field.description:
        return " ".join(field.description.split())
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and annotation.__doc__:
        return annotation.__doc__.strip().splitlines()[0]
    return ""


def scalar(value: Any) -> str:
    """One value as inline YAML (lists and mappings in flow style, strings quoted where YAML needs it)."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**6, sort_keys=False).strip()[1:-1]


def explained_yaml(config: BaseModel, indent: int = 0) -> str:
    lines = []
    for key, value in config:
        comment = description_of(type(config), key)
        suffix = f"  # {comment}" if comment else ""
        pad = "  " * indent
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{key}:{suffix}")
            lines.append(explained_yaml(value, indent + 1).rstrip("\n"))
        else:
            lines.append(f"{pad}{key}: {scalar(_plain(value))}{suffix}")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """Nested configs inside lists (distill.stages) as plain mappings."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
