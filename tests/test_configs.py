"""Every shipped config in configs/ validates (unknown keys and bad values are errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdistill.config import RunConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.y*ml"))


def test_configs_are_shipped() -> None:
    assert any(path.name == "fashion_mnist_methods.yaml" for path in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_validates(path: Path) -> None:
    assert isinstance(load_config(path), RunConfig)
