"""YAML from users, loaded safely and boundedly: no tags that run code, and no input that hangs the loader.

``yaml.safe_load`` already refuses ``!!python`` tags, but a few hundred bytes of nested aliases (a "billion laughs"
document) expand into billions of nodes once anything walks the result (pydantic validates every element), and
deep nesting overflows the composer's recursion. Both become a ConfigError here, before anything is constructed.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from kdistill.errors import ConfigError

MAX_YAML_CHARS = 1_000_000  # a config file is a few kB; a megabyte of YAML is a mistake or an attack
MAX_YAML_NODES = 100_000  # scalars + collections after alias expansion
MAX_YAML_DEPTH = 100


def load_yaml(text: str, what: str) -> Any:
    """Parse one YAML document; malformed, oversized or alias-bomb input is a one-line ConfigError naming ``what``."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{what} is {len(text):,} characters of YAML; the limit is {MAX_YAML_CHARS:,}")
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses unprintable characters already here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, what)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{what} nests too deeply to be a config (limit {MAX_YAML_DEPTH} levels)") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expanded_size(root: yaml.Node, what: str) -> None:
    """Count the nodes the document expands to (each alias counts its whole target again), without expanding."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{what} nests too deeply to be a config (limit {MAX_YAML_DEPTH} levels)")
        if key in in_progress:
            raise ConfigError(f"{what} holds a recursive YAML alias (a value that contains itself)")
        in_progress.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        in_progress.discard(key)
        if total > MAX_YAML_NODES:
            raise ConfigError(f"{what} expands to over {MAX_YAML_NODES:,} YAML values (nested aliases?); refused")
        sizes[key] = total
        return total

    size(root, 0)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def reject_non_finite(value: Any, path: str = "") -> Any:
    """Raise ValueError naming the first NaN or infinite float inside nested dicts/lists (free-form kwargs)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'value'} must be a finite number, got {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            reject_non_finite(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            reject_non_finite(item, f"{path}[{position}]")
    return value
